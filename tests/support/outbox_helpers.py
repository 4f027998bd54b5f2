"""Helpers for the outbox tests: configuration, running delivery with a deadline, a scripted SCP."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from tests.support.peers import HOST, free_port

from kiosk.config import Config, parse_config
from kiosk.outbox import Outbox
from kiosk.outbox.destinations import parse_destination
from kiosk.outbox.worker import Delivery, wait_for


def outbox_config(tmp_path: Path, destinations: dict | None = None, **outbox: object) -> Config:
    """A configuration with a private spool and short retry times."""
    values = {"spool_dir": str(tmp_path / "spool"), "min_free_mb": 0, "retry_interval": 0.2,
              "retry_max_interval": 1.0, "retry_count": 5, "commitment_timeout": 10.0}
    values.update(outbox)
    return parse_config({"local": {"ae_title": "KIOSK"}, "destinations": destinations or {}, "outbox": values})


def queue(outbox: Outbox, config: Config, files: list[Path], to: str, commit: bool = False) -> list[int]:
    name, spec = parse_destination(config, to)
    return outbox.accept_files(files, {name: spec}, {name} if commit else set())[name]


def deliver(outbox: Outbox, config: Config, until: Callable[[], bool] | list[int], timeout: float = 30.0) -> None:
    """Run delivery in this thread until ``until`` (or the jobs are done); fail after ``timeout`` s."""
    if not callable(until):
        until = wait_for(outbox, until)
    delivery = Delivery(outbox, config, poll=0.1)
    timer = threading.Timer(timeout, delivery.shutdown)
    timer.start()
    started = time.monotonic()
    try:
        delivery.run(until=until)
    finally:
        timer.cancel()
    assert time.monotonic() - started < timeout, f"delivery did not finish within {timeout} s"


class ScriptedSCP:
    """A pynetdicom Storage SCP answering statuses from a script (then success), optionally aborting.

    ``statuses``: C-STORE statuses to answer, one per request, before 0x0000.
    ``abort_at``: abort the association when receiving the n-th request (1-based), once.
    ``abort_on``: abort it whenever one of these SOP Instance UIDs arrives (a file the SCP cannot take).
    ``comment``: the Error Comment sent with every status but success.
    """

    def __init__(self, aet: str = "SCRIPTED", statuses: list[int] | None = None, abort_at: int | None = None,
                 abort_on: set[str] = frozenset(), comment: str = "") -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.aet = aet
        self.port = free_port()
        self.statuses = list(statuses or [])
        self.abort_at = abort_at
        self.abort_on = set(abort_on)
        self.comment = comment
        self.received: list[str] = []
        self.requests = 0
        self.associations = 0  # accepted so far
        self.releases = 0  # released by us (the kiosk), not aborted
        self._lock = threading.Lock()
        ae = AE(ae_title=aet)
        ae.supported_contexts = AllStoragePresentationContexts
        # Storage commitment requests are acknowledged, but no report ever comes.
        ae.add_supported_context("1.2.840.10008.1.20.1", scu_role=True, scp_role=True)
        self._server = ae.start_server((HOST, self.port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._on_store), (evt.EVT_N_ACTION, lambda event: (0x0000, None)),
            (evt.EVT_ACCEPTED, lambda event: self._count("associations")),
            (evt.EVT_RELEASED, lambda event: self._count("releases"))])

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    @property
    def url(self) -> str:
        return f"{self.aet}@{HOST}:{self.port}"

    def _on_store(self, event) -> object:  # noqa: ANN001 - pynetdicom Event
        with self._lock:
            self.requests += 1
            if self.abort_at is not None and self.requests == self.abort_at:
                self.abort_at = None
                event.assoc.abort()
                return 0xA700
            if str(event.request.AffectedSOPInstanceUID) in self.abort_on:
                event.assoc.abort()
                return 0xA700
            status = self.statuses.pop(0) if self.statuses else 0x0000
            if status in (0x0000, 0xB000, 0xB006, 0xB007):
                self.received.append(str(event.request.AffectedSOPInstanceUID))
            if status and self.comment:
                from pydicom.dataset import Dataset

                answer = Dataset()
                answer.Status, answer.ErrorComment = status, self.comment
                return answer
            return status

    def stop(self) -> None:
        self._server.shutdown()


def cli(config_file: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``run(*args, check=0)``: ``kiosk --config config_file ARGS`` in a subprocess, its exit code checked
    (``check=None``: not), and never a traceback or an internal error."""

    def run(*args: str, timeout: float = 60, check: int | None = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config_file), *args],
                                capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
        if check is not None:
            assert result.returncode == check, result.stdout + result.stderr
        return result

    return run
