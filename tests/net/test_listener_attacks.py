"""Our listener under attack, as ``kiosk listen`` (the same listener as the delivery service and the UI):
raw sockets claiming huge PDUs, sending garbage or nothing, while DCMTK echoscu from a configured node must
still get through."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.peers import HOST, free_port, wait_for_port
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from tests.net.test_listener_service import echoscu, write_config

from kiosk.net.fastpath.guard import DROPS_LOGGED, MAX_WAITING, REQUEST_TIMEOUT, DropLog

STRANGER = "127.0.0.2"  # a loopback address that is no configured node's host
MB = 1024 * 1024


class Listening:
    """``kiosk listen`` accepting PACS@127.0.0.1, its log in a file (an attack logs a lot); stopped by PID."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        config = write_config(tmp_path, self.port, {"pacs": {"ae_title": "PACS", "host": HOST, "port": 9}})
        self.err = tmp_path / "listen.err"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", config, "listen"],
                                         stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for_port(self.port, self.proc, timeout=30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {self.log()}") from None

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            assert self.proc.wait(timeout=20) == 0, self.log()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert "Traceback" not in self.log()


@pytest.fixture
def listening(tmp_path):
    service = Listening(tmp_path)
    yield service
    service.stop()


def connect(port: int, source: str = HOST) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((HOST, port))
    return sock


def stream(sock: socket.socket, header: bytes, total: int) -> int:
    """Send ``header`` then up to ``total`` bytes; the number sent before the listener hung up."""
    sent = 0
    chunk = b"\0" * MB
    sock.settimeout(20)
    try:
        sock.sendall(header)
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def hung_up(sock: socket.socket, within: float) -> bool:
    """Whether the listener closed ``sock`` within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass  # reset: closed too
    return True


def echo_as_pacs(port: int) -> subprocess.CompletedProcess:
    result = echoscu(port, "PACS")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.fast_path  # the guard reads connections before pynetdicom
def test_a_header_claiming_4_gb_before_association_is_refused_at_once(listening):
    before = listening.rss_mb()
    socks = [connect(listening.port) for _ in range(4)]
    try:
        # A-ASSOCIATE-RQ type, length 0xFFFFFFFF, then 64 MB each: pynetdicom used to keep every byte.
        sent = [stream(sock, b"\x01\x00\xff\xff\xff\xff", 64 * MB) for sock in socks]
        assert all(n < 16 * MB for n in sent), f"the listener took {sent} bytes of a 4 GB PDU"
        assert listening.rss_mb() - before < 40, (before, listening.rss_mb())
        echo_as_pacs(listening.port)
    finally:
        for sock in socks:
            sock.close()
    assert "dropped a connection from 127.0.0.1: announced a 4294967301-byte association request" in listening.log()


@pytest.mark.fast_path  # the guard reads connections before pynetdicom
def test_a_pdu_longer_than_agreed_after_association_is_refused(listening):
    ae = AE(ae_title="PACS")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, listening.port, ae_title="KIOSK")
    assert assoc.is_established
    before = listening.rss_mb()
    try:
        # A P-DATA-TF claiming 4 GB on an established association (we agreed on 16382 bytes).
        sent = stream(assoc.dul.socket.socket, b"\x04\x00\xff\xff\xff\xff", 64 * MB)
        assert sent < 16 * MB, f"the listener took {sent} bytes of a 4 GB PDU"
        assert listening.rss_mb() - before < 40, (before, listening.rss_mb())
    finally:
        assoc.abort()
    echo_as_pacs(listening.port)
    assert "hung up on 127.0.0.1: it announced a PDU of 4294967295 bytes, more than the 16382 agreed" in listening.log()


@pytest.mark.fast_path  # the guard reads connections before pynetdicom
def test_one_byte_connections_do_not_lock_out_configured_nodes(listening):
    garbage = [connect(listening.port) for _ in range(10)]
    silent = [connect(listening.port) for _ in range(10)]
    try:
        for sock in garbage:
            sock.sendall(b"G")  # not a PDU type: dropped at the first byte
        for sock in silent:
            sock.sendall(b"\x01")  # the start of an A-ASSOCIATE-RQ, then nothing
        echo_as_pacs(listening.port)
        echo_as_pacs(listening.port)
        assert all(hung_up(sock, within=3) for sock in garbage)
        # Where pynetdicom waited 30 s (its ACSE timeout), holding one of its 10 association slots.
        assert all(hung_up(sock, within=REQUEST_TIMEOUT + 5) for sock in silent)
    finally:
        for sock in garbage + silent:
            sock.close()
    log = listening.log()
    assert "dropped a connection from 127.0.0.1: not a DICOM association request (first byte 0x47" in log
    assert f"sent no complete association request within {REQUEST_TIMEOUT:g} s" in log
    assert "not a configured node" not in log and "Local Limit" not in log


@pytest.mark.fast_path  # the guard reads connections before pynetdicom
def test_200_idle_sockets_do_not_lock_out_configured_nodes(listening):
    idle = [connect(listening.port, STRANGER) for _ in range(200)]
    try:
        echo_as_pacs(listening.port)
        assert sum(hung_up(sock, within=0.01) for sock in idle) >= 200 - MAX_WAITING - 1  # dropped, oldest first
        assert all(hung_up(sock, within=REQUEST_TIMEOUT + 5) for sock in idle)
    finally:
        for sock in idle:
            sock.close()
    assert f"more than {MAX_WAITING} connections were waiting" in listening.log()


@pytest.mark.fast_path  # the guard reads connections before pynetdicom
def test_strangers_never_push_out_a_configured_hosts_connection(listening):
    ours = [connect(listening.port) for _ in range(5)]  # from PACS's host, slow to send their requests
    strangers = [connect(listening.port, STRANGER) for _ in range(100)]
    try:
        time.sleep(1)
        assert not any(hung_up(sock, within=0.1) for sock in ours)
        assert sum(hung_up(sock, within=0.01) for sock in strangers) >= 100 - MAX_WAITING
        echo_as_pacs(listening.port)
    finally:
        for sock in ours + strangers:
            sock.close()


def test_a_rejection_is_logged_with_its_reason(listening):
    ae = AE(ae_title="PACS")
    ae.add_requested_context(Verification)
    held = []
    try:
        while len(held) < 12 and (not held or held[-1].is_established):
            held.append(ae.associate(HOST, listening.port, ae_title="KIOSK"))
        assert not held[-1].is_established  # pynetdicom's limit: 10 associations at a time
    finally:
        for assoc in held:
            assoc.release()
    deadline = time.monotonic() + 5
    while "rejected an association" not in listening.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "rejected an association from PACS at 127.0.0.1: local limit exceeded" in listening.log()
    assert "not a configured node" not in listening.log()


@pytest.mark.fast_path  # the guard reads connections before pynetdicom
def test_a_flood_of_garbage_connections_does_not_fill_the_log(listening):
    """Each dropped connection used to be one warning: a flood wrote the log full. Now at most
    DROPS_LOGGED a minute are, and the flood still cannot lock out the PACS."""
    for _ in range(3 * DROPS_LOGGED):
        sock = connect(listening.port)
        sock.sendall(b"G")
        assert hung_up(sock, within=3)
        sock.close()
    echo_as_pacs(listening.port)
    assert listening.log().count("dropped a connection from") == DROPS_LOGGED


def test_dropped_connections_beyond_the_budget_are_summed_up(caplog):
    drops = DropLog(budget=2, window=0.2)
    with caplog.at_level("WARNING", logger="kiosk.net.fastpath.guard"):
        for n in range(5):
            drops.dropped("127.0.0.2", f"garbage {n}")
        time.sleep(0.3)
        drops.dropped("127.0.0.2", "garbage 5")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["dropped a connection from 127.0.0.2: garbage 0", "dropped a connection from 127.0.0.2: garbage 1",
                     lines[2], "dropped a connection from 127.0.0.2: garbage 5"]
    assert lines[2].startswith("3 more connection(s) were dropped in the last")
