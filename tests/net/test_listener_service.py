"""Our listener while ``kiosk outbox run`` runs (C-ECHO with DCMTK echoscu, commitment with Orthanc),
and ``kiosk listen``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
from tests.support.outbox_data import make_instances
from tests.support.outbox_helpers import outbox_config
from tests.support.peers import HOST, free_port, require_binary, wait_for_port

from kiosk.config import LocalConfig, parse_config, parse_node_url, to_toml, values_of
from kiosk.net.echo import echo
from kiosk.net.errors import NetworkError

REJECTED = "calling AE title not recognised"


def write_config(tmp_path, port: int, destinations: dict) -> str:
    base = values_of(outbox_config(tmp_path).outbox)
    config = parse_config({"local": {"ae_title": "KIOSK", "port": port}, "destinations": destinations, "outbox": base})
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    return str(path)


def kiosk(config: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kiosk", "--config", config, *args],
                            capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


class Service:
    """A ``kiosk`` subprocess listening on ``port``; ended by PID with SIGTERM (a clean stop, exit 0)."""

    def __init__(self, config: str, port: int, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", config, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_port(port, self.proc, timeout=30)

    def stop(self) -> tuple[int, str, str]:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err


def echoscu(port: int, calling: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("echoscu"), "-aet", calling, "-aec", "KIOSK", HOST, str(port)],
                          capture_output=True, text=True, timeout=30)


def test_outbox_service_answers_echo_from_configured_nodes_only(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port, {"pacs": {"ae_title": "PACS", "host": HOST, "port": 9}})
    service = Service(config, port, "outbox", "run")
    try:
        assert echoscu(port, "PACS").returncode == 0
        stranger = echoscu(port, "STRANGER")
        assert stranger.returncode != 0
        assert "calling ae title not recognized" in (stranger.stdout + stranger.stderr).lower()  # DCMTK's spelling
        with pytest.raises(NetworkError) as caught:
            echo(parse_node_url(f"KIOSK@{HOST}:{port}"), dataclasses.replace(LocalConfig(), ae_title="STRANGER"))
        assert REJECTED in caught.value.message
    finally:
        code, _, err = service.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_outbox_service_port_in_use_is_one_clear_line(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port, {})
    holder = Service(config, port, "listen")
    try:
        (tmp_path / "other").mkdir()
        other = write_config(tmp_path / "other", port, {})  # its own spool, same port
        result = kiosk(other, "outbox", "run", "--exit-when-idle")
        assert result.returncode == 1
        assert f"cannot listen on port {port}" in result.stderr and "[local] port" in result.stderr
    finally:
        holder.stop()


def test_commitment_through_the_running_service(tmp_path, orthanc):
    port = orthanc.extra["kiosk_port"]
    config = write_config(tmp_path, port, {"pacs": {"ae_title": orthanc.aet, "host": HOST, "port": orthanc.port,
                                                    "storage_commitment": True}})
    made = make_instances(tmp_path / "in", 2, patient_id="SERVICE1")
    service = Service(config, port, "outbox", "run", "--poll", "0.2")
    try:
        # Queued by another process; the service (which holds [local] port) sends and asks for commitment.
        assert kiosk(config, "send", str(tmp_path / "in"), "--to", "pacs").returncode == 0
        deadline = time.monotonic() + 60
        while True:
            jobs = json.loads(kiosk(config, "outbox", "list", "--json").stdout)["jobs"]
            states = [job["state"] for job in jobs]
            if states and all(state in ("committed", "failed") for state in states):
                break
            assert time.monotonic() < deadline, f"not committed in time: {jobs}"
            time.sleep(0.3)
        assert states == ["committed", "committed"], jobs
        assert echoscu(port, "KIOSK").returncode != 0  # still listening, still strict
        assert echoscu(port, orthanc.aet).returncode == 0
    finally:
        code, _, err = service.stop()
    assert code == 0, err
    stored = {orthanc.tags(i)["SOPInstanceUID"] for i in orthanc.instances()}
    assert set(made) <= stored


def test_kiosk_listen_with_dcmtk_flags(tmp_path):
    port = free_port()
    config = write_config(tmp_path, 11112, {"pacs": {"ae_title": "PACS", "host": HOST, "port": 9}})
    service = Service(config, port, "listen", "-aet", "KIOSK", str(port))
    try:
        assert echoscu(port, "PACS").returncode == 0
        nobody = echoscu(port, "NOBODY")
        assert "calling ae title not recognized" in (nobody.stdout + nobody.stderr).lower()
    finally:
        code, out, err = service.stop()
    assert code == 0, err
    assert f"listening as KIOSK on port {port}; accepting PACS" in out
    assert "not a configured node" in err  # the rejection is logged as a warning


def test_the_kiosk_announces_its_own_implementation_identity(tmp_path, storescp_factory):
    """DCMTK, in debug mode, logs the peer's Implementation Class UID and Version Name: both the
    association the kiosk requests (storescp) and the one it accepts (echoscu to `kiosk listen`)
    carry the kiosk's, not pynetdicom's."""
    from kiosk import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

    scp = storescp_factory(options=["-d"])
    assert subprocess.run([sys.executable, "-m", "kiosk", "echo", scp.url], capture_output=True,
                          timeout=60).returncode == 0
    port = free_port()
    service = Service(write_config(tmp_path, port, {"pacs": {"ae_title": "PACS", "host": HOST, "port": 9}}),
                      port, "listen")
    try:
        answer = subprocess.run([require_binary("echoscu"), "-d", "-aet", "PACS", "-aec", "KIOSK", HOST, str(port)],
                                capture_output=True, text=True, timeout=30)
    finally:
        service.stop()
    for log in (scp.output(), answer.stdout + answer.stderr):
        assert f"Their Implementation Class UID:    {IMPLEMENTATION_CLASS_UID}" in log, log
        assert f"Their Implementation Version Name: {IMPLEMENTATION_VERSION_NAME}" in log
        assert "PYNETDICOM" not in log
