"""The event-driven DUL reactor: idle associations cost no CPU, exchanges and endings stay prompt."""

from __future__ import annotations

import threading
import time

import pytest

from kiosk.config import LocalConfig, parse_node_url
from kiosk.net.nodes import associate, release

pytestmark = pytest.mark.fast_path


def thread_cpu_seconds(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def test_an_idle_association_costs_no_cpu_and_still_answers(storescp):
    from pynetdicom.sop_class import Verification
    from pynetdicom.presentation import build_context

    assoc = associate(parse_node_url(storescp.url), LocalConfig(), [build_context(Verification)])
    try:
        assert type(assoc.dul).__name__ == "EventDrivenDUL"
        # The DUL thread's own CPU: the whole process's counted whatever else earlier tests had
        # left running in it, and the association's thread (pynetdicom's reactor, waking every
        # 1 ms) is not ours to judge. pynetdicom's polling DUL, at the 0.1 ms it needs for quick
        # answers, used ~0.08 s a second; ours waits in select.
        before = thread_cpu_seconds(assoc.dul)
        time.sleep(1.0)
        assert thread_cpu_seconds(assoc.dul) - before < 0.03
        # Woken by the socket after the idle second; the exchange's latency is measured
        # by tests/benchmarks/test_net_bench.py, not here on a machine shared with others.
        for _ in range(20):
            assert assoc.send_c_echo().Status == 0x0000
    finally:
        started = time.perf_counter()
        release(assoc)
        assoc.dul.join(5)
    assert not assoc.dul.is_alive()
    assert time.perf_counter() - started < 2.0
