"""Verification SCU: C-ECHO a node and time the round trip."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kiosk.config import LocalConfig, NodeConfig
from kiosk.net import errors
from kiosk.net.nodes import associate, release

VERIFICATION = "1.2.840.10008.1.1"


@dataclass(frozen=True)
class EchoResult:
    """The peer's C-ECHO status, the C-ECHO round trip and the whole exchange, in seconds."""

    status: int
    round_trip: float
    total: float


def echo(node: NodeConfig, local: LocalConfig) -> EchoResult:
    """Associate, C-ECHO once, release. Raises ``NetworkError`` on any failure."""
    from pynetdicom.presentation import build_context

    started = time.perf_counter()
    assoc = associate(node, local, [build_context(VERIFICATION)], what="Verification (C-ECHO)")
    try:
        sent = time.perf_counter()
        status = assoc.send_c_echo()
        round_trip = time.perf_counter() - sent
        if "Status" not in status:
            if assoc.is_aborted:
                raise errors.abort_error(node, "C-ECHO")
            raise errors.timeout_error(node, "C-ECHO", node.dimse_timeout)
    finally:
        release(assoc)
    return EchoResult(int(status.Status), round_trip, time.perf_counter() - started)
