"""The event-driven DUL reactor: idle associations cost no CPU, exchanges and endings stay prompt."""

from __future__ import annotations

import resource
import time

from kiosk.config import LocalConfig, parse_node_url
from kiosk.net.nodes import associate, release


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_an_idle_association_costs_no_cpu_and_answers_at_once(storescp):
    from pynetdicom.sop_class import Verification
    from pynetdicom.presentation import build_context

    assoc = associate(parse_node_url(storescp.url), LocalConfig(), [build_context(Verification)])
    try:
        assert type(assoc.dul).__name__ == "EventDrivenDUL"
        before = cpu_seconds()
        time.sleep(1.0)
        # The association's own reactor still wakes every 1 ms (~0.025 s); pynetdicom's polling
        # DUL, at the 0.1 ms it needs for quick answers, added ~0.08 s more.
        assert cpu_seconds() - before < 0.06
        exchanges = []
        for _ in range(20):
            started = time.perf_counter()
            assert assoc.send_c_echo().Status == 0x0000
            exchanges.append(time.perf_counter() - started)
        assert sorted(exchanges)[10] < 0.02
    finally:
        started = time.perf_counter()
        release(assoc)
        assoc.dul.join(5)
    assert not assoc.dul.is_alive()
    assert time.perf_counter() - started < 0.5
