"""STOW-RS destinations: ``kiosk store``, ``kiosk send`` and ``kiosk echo`` against Orthanc's DICOMweb
plugin with HTTP authentication, and against a small test server for the answers Orthanc never gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from tests.conftest import ORTHANC_WEB_PASSWORD, ORTHANC_WEB_USER
from tests.support.outbox_data import make_instances
from tests.support.outbox_helpers import deliver, outbox_config, queue
from tests.support.stow_server import Behaviour, StowServer

from kiosk.config import to_toml
from kiosk.outbox import Outbox


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def web_config(tmp_path: Path, url: str, password: str | None = ORTHANC_WEB_PASSWORD, **node: object):
    """A configuration with one STOW-RS destination ``web`` (user ``kiosk`` when ``password``) and a private outbox."""
    values: dict = {"stow_url": url, **node}
    if password is not None:
        values |= {"username": ORTHANC_WEB_USER,
                   "password_file": str(secret_file(tmp_path / "web.password", password))}
    return outbox_config(tmp_path, {"web": values}, retry_interval=0.2)


class Kiosk:
    """``kiosk --config FILE ...`` in a subprocess with its own log directory (``log()``)."""

    def __init__(self, tmp_path: Path, config) -> None:  # noqa: ANN001 - Config, or TOML text
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.config_file = tmp_path / "kiosk.toml"
        self.config_file.write_text(config if isinstance(config, str) else to_toml(config))
        self.state = tmp_path / "state"
        self.seen = ""

    def __call__(self, *args: str, check: int | None = 0, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(self.config_file), *args],
                                capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "XDG_STATE_HOME": str(self.state)})
        self.seen += result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
        if check is not None:
            assert result.returncode == check, result.stdout + result.stderr
        return result

    def log(self) -> str:
        path = self.state / "kiosk" / "log" / "kiosk.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def jobs(self) -> list[dict]:
        return json.loads(self("outbox", "list", "--json").stdout)["jobs"]


def arrived(orthanc) -> dict[str, str]:  # noqa: ANN001 - Orthanc
    """SOP Instance UID -> Orthanc's instance id, of what Orthanc holds."""
    return {orthanc.tags(i)["SOPInstanceUID"]: i for i in orthanc.instances()}


# -- Orthanc with authentication ----------------------------------------------------------


def test_store_to_orthanc_over_stow_sends_each_file_as_it_is(tmp_path, orthanc_web):
    orthanc_web.clear()
    made = make_instances(tmp_path / "in", 3, patient_id="STOW1")
    kiosk = Kiosk(tmp_path, web_config(tmp_path, orthanc_web.dicomweb_url))
    result = kiosk("--debug", "store", str(tmp_path / "in"), "--to", "web")
    assert f"3 of 3 instance(s) stored on web ({orthanc_web.dicomweb_url})" in result.stdout
    assert all(line.startswith("stored   ") for line in result.stdout.splitlines()[:3])
    held = arrived(orthanc_web)
    assert set(held) == set(made)
    for uid, path in made.items():
        assert orthanc_web.rest_bytes(f"/instances/{held[uid]}/file") == path.read_bytes()
    assert ORTHANC_WEB_PASSWORD not in kiosk.seen + kiosk.log()
    assert kiosk.log().strip()  # something was logged: the check above can see a leak


def test_send_wait_and_echo_to_orthanc_over_stow(tmp_path, orthanc_web):
    orthanc_web.clear()
    made = make_instances(tmp_path / "in", 4, patient_id="STOW2")
    kiosk = Kiosk(tmp_path, web_config(tmp_path, orthanc_web.dicomweb_url))
    echo = kiosk("echo", "web")
    assert echo.stdout.startswith(f"web ({orthanc_web.dicomweb_url}): OK, QIDO-RS search answered HTTP 200")
    result = kiosk("send", str(tmp_path / "in"), "--to", "web", "--wait")
    assert "queued 4 instance(s) for web" in result.stdout and "4 of 4 job(s) delivered" in result.stdout
    assert set(arrived(orthanc_web)) == set(made)
    assert {job["state"] for job in kiosk.jobs()} == {"sent"}
    assert ORTHANC_WEB_PASSWORD not in kiosk.seen + kiosk.log()


def test_a_wrong_password_needs_a_person_and_is_never_shown(tmp_path, orthanc_web):
    orthanc_web.clear()
    wrong = "Wr0ng-Passw0rd-9931"
    make_instances(tmp_path / "in", 2, patient_id="STOW3")
    kiosk = Kiosk(tmp_path, web_config(tmp_path, orthanc_web.dicomweb_url, password=wrong))
    echo = kiosk("echo", "web", check=1)
    assert "refused our credentials (HTTP 401" in echo.stderr
    assert "check username and password_file (or token_file) of [destinations.web]" in echo.stderr
    stored = kiosk("store", str(tmp_path / "in"), "--to", "web", check=1)
    assert "refused our credentials" in stored.stderr
    sent = kiosk("send", str(tmp_path / "in"), "--to", "web", "--wait", check=1)
    assert "2 failed" in sent.stdout
    jobs = kiosk.jobs()
    assert [job["state"] for job in jobs] == ["failed", "failed"]  # waits for a person, not retried
    assert all("refused our credentials" in job["reason"] and "password_file" in job["reason"] for job in jobs)
    assert jobs[0]["attempts"] == 0
    assert arrived(orthanc_web) == {}
    assert wrong not in kiosk.seen + kiosk.log()
    assert kiosk.log().strip()


def test_echo_without_credentials_says_which_keys_to_set(tmp_path, orthanc_web):
    kiosk = Kiosk(tmp_path, web_config(tmp_path, orthanc_web.dicomweb_url, password=None))
    echo = kiosk("echo", "web", check=1)
    assert "asks for credentials (HTTP 401" in echo.stderr and "set username and password_file" in echo.stderr


# -- the test server: what Orthanc never answers ---------------------------------------------


def _uids(made: dict[str, Path]) -> list[str]:
    return [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in sorted(made.values())]


def test_failure_and_warning_reasons_become_per_instance_outcomes(tmp_path):
    made = make_instances(tmp_path / "in", 4)
    uids = _uids(made)
    script = [Behaviour(warnings={uids[0]: 0xB000}, failures={uids[1]: 0xA900, uids[2]: 0xA700, uids[3]: 0xC122})]
    with StowServer(script) as server:
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None))
        result = kiosk("send", str(tmp_path / "in"), "--to", "web", "--wait", check=1)
    assert "2 of 4 job(s) delivered" in result.stdout
    jobs = {job["sop_instance_uid"]: job for job in kiosk.jobs()}
    assert jobs[uids[0]]["state"] == "sent" and "B000" in jobs[uids[0]]["reason"]
    assert jobs[uids[1]]["state"] == "failed" and "A900" in jobs[uids[1]]["reason"]
    assert jobs[uids[3]]["state"] == "failed" and "C122 Referenced Transfer Syntax not supported" in jobs[uids[3]]["reason"]
    assert jobs[uids[2]]["state"] == "sent"  # A700 out of resources: retried, then taken
    assert server.received_uids().count(uids[2]) == 2 and server.received_uids().count(uids[1]) == 1


def test_409_fails_every_instance_with_its_reason(tmp_path):
    make_instances(tmp_path / "in", 2)
    with StowServer([Behaviour(status=409, all_fail=0xC000)]) as server:
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None))
        kiosk("send", str(tmp_path / "in"), "--to", "web", "--wait", check=1)
    jobs = kiosk.jobs()
    assert [job["state"] for job in jobs] == ["failed", "failed"]
    assert all("C000" in job["reason"] for job in jobs)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status, expected", [(400, "HTTP 400 Bad Request"), (415, "HTTP 415 Unsupported Media Type")])
def test_400_and_415_fail_without_retry(tmp_path, status, expected):
    make_instances(tmp_path / "in", 1)
    with StowServer([Behaviour(status=status)]) as server:
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None))
        result = kiosk("store", str(tmp_path / "in"), "--to", "web", check=1)
    assert f"FAILED   {tmp_path / 'in' / 'im00000.dcm'}: refused by web ({server.url}): {expected}" in result.stdout
    assert len(server.requests) == 1


def test_503_with_retry_after_is_retried_later(tmp_path):
    made = make_instances(tmp_path / "in", 3)
    with StowServer([Behaviour(status=503, retry_after=7)]) as server:
        # Two requests (10 KB each at most); retry_interval long enough to see the jobs retrying.
        config = outbox_config(tmp_path, {"web": {"stow_url": server.url, "max_request_mb": 0.01}}, retry_interval=30)
        outbox = Outbox.from_config(config)
        try:
            ids = queue(outbox, config, sorted(made.values()), "web")
            deliver(outbox, config, lambda: all(j.state == "retrying" for j in outbox.journal.jobs_by_id(ids)))
            jobs = outbox.journal.jobs_by_id(ids)
        finally:
            outbox.close()
    assert all("HTTP 503 Service Unavailable (it asks to retry after 7 s)" in job.reason for job in jobs)
    assert all("retry 1 of" in job.reason for job in jobs)
    assert len(server.requests) == 1  # the requests after a busy answer wait too


def test_a_slow_answer_times_out_and_is_retried(tmp_path):
    made = make_instances(tmp_path / "in", 2)
    with StowServer([Behaviour(delay=3)]) as server:
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None, network_timeout=0.5))
        result = kiosk("send", str(tmp_path / "in"), "--to", "web", "--wait")
    assert "2 of 2 job(s) delivered" in result.stdout
    assert sorted(server.received_uids()) == sorted(list(made) * 2)  # the same SOP Instance UIDs again
    assert "no answer from web" in kiosk.log()


def test_a_connection_dropped_after_the_request_leaves_it_in_flight_and_resends_the_same_uids(tmp_path):
    made = make_instances(tmp_path / "in", 3)
    with StowServer([Behaviour(drop=True)]) as server:
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None))
        result = kiosk("send", str(tmp_path / "in"), "--to", "web", "--wait")
    assert "3 of 3 job(s) delivered" in result.stdout
    first, *again = server.requests
    assert sorted(first.uids) == sorted(made)
    # Each instance that was in flight goes alone next time, under the same SOP Instance UID.
    assert [len(r.uids) for r in again] == [1, 1, 1] and sorted(u for r in again for u in r.uids) == sorted(made)


def test_a_batch_over_max_request_mb_is_split_into_requests_under_it(tmp_path):
    made = make_instances(tmp_path / "in", 8, size=20_000)
    with StowServer(max_bytes=50_000) as server:  # a larger request would be answered 413
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None, max_request_mb=0.05))
        result = kiosk("store", str(tmp_path / "in"), "--to", "web")
    assert "8 of 8 instance(s) stored" in result.stdout
    assert len(server.requests) >= 4
    assert all(0 < r.content_length <= 50_000 and not r.chunked for r in server.requests)
    assert sorted(server.received_uids()) == sorted(made)


def test_413_halves_the_request_and_fails_an_instance_too_large_alone(tmp_path):
    small = make_instances(tmp_path / "in", 4, size=10_000)
    big = make_instances(tmp_path / "big", 1, size=60_000)
    with StowServer(max_bytes=25_000) as server:
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None))
        result = kiosk("store", str(tmp_path / "in"), str(tmp_path / "big"), "--to", "web", check=1)
    assert "4 of 5 instance(s) stored" in result.stdout
    (big_path,) = big.values()
    assert f"FAILED   {big_path}: web ({server.url}) refused the request as too large (HTTP 413" in result.stdout
    assert "lower max_request_mb of [destinations.web]" in result.stdout
    assert sorted(set(server.received_uids()) & set(small)) == sorted(small)


def test_a_spool_file_changed_after_it_was_accepted_is_damaged_and_the_rest_is_sent(tmp_path):
    made = make_instances(tmp_path / "in", 3)
    with StowServer() as server:
        config = web_config(tmp_path, server.url, password=None)
        outbox = Outbox.from_config(config)
        try:
            ids = queue(outbox, config, sorted(made.values()), "web")
            victim = outbox.journal.jobs_by_id(ids)[1]
            spool = outbox.spool.path(victim.spool_name)
            data = bytearray(spool.read_bytes())
            data[-1] ^= 0xFF
            spool.write_bytes(bytes(data))
            deliver(outbox, config, ids)
            jobs = outbox.journal.jobs_by_id(ids)
        finally:
            outbox.close()
    assert [job.state for job in jobs] == ["sent", "failed", "sent"]
    assert "SHA-256 differs" in jobs[1].reason
    assert sorted(server.received_uids()) == sorted(uid for uid in made if uid != victim.sop_instance_uid)


def test_echo_over_https_verifies_the_server_against_tls_ca(tmp_path):
    from tests.net.test_net_tls import make_ca, make_cert

    make_ca(tmp_path, "ca")
    make_ca(tmp_path, "otherca")
    make_cert(tmp_path, "server", "ca", "IP:127.0.0.1")
    with StowServer(tls=(str(tmp_path / "server.crt"), str(tmp_path / "server.key"))) as server:
        kiosk = Kiosk(tmp_path, "".join(f'[destinations.{name}]\nstow_url = "{server.url}"\n'
                                        f'[destinations.{name}.tls]\nca = "{tmp_path / ca}.crt"\n'
                                        for name, ca in (("web", "ca"), ("other", "otherca"))))
        assert "OK, QIDO-RS search answered HTTP 200" in kiosk("echo", "web").stdout
        refused = kiosk("echo", "other", check=1)
    assert "TLS: the certificate of other" in refused.stderr and "could not be verified" in refused.stderr


def test_a_server_asking_for_a_client_certificate_gets_tls_cert_and_key(tmp_path):
    from tests.net.test_net_tls import make_ca, make_cert

    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "server", "ca", "IP:127.0.0.1")
    make_cert(tmp_path, "client", "ca", "DNS:kiosk")
    made = make_instances(tmp_path / "in", 2)
    with StowServer(tls=(str(tmp_path / "server.crt"), str(tmp_path / "server.key")),
                    client_ca=str(tmp_path / "ca.crt")) as server:
        with_cert = f'cert = "{tmp_path}/client.crt"\nkey = "{tmp_path}/client.key"\n'
        kiosk = Kiosk(tmp_path, "".join(f'[destinations.{name}]\nstow_url = "{server.url}"\n'
                                        f'[destinations.{name}.tls]\nca = "{tmp_path}/ca.crt"\n{cert}'
                                        for name, cert in (("web", with_cert), ("anonymous", ""))))
        assert "OK, QIDO-RS search answered HTTP 200" in kiosk("echo", "web").stdout
        assert "2 of 2 instance(s) stored on web" in kiosk("store", str(tmp_path / "in"), "--to", "web").stdout
        refused = kiosk("echo", "anonymous", check=1)
        assert not kiosk("store", str(tmp_path / "in"), "--to", "anonymous", check=None).returncode == 0
    assert "anonymous" in refused.stderr and "TLS" in refused.stderr
    assert sorted(uid for request in server.requests for uid in request.uids) == sorted(made)


def test_echo_to_nobody_says_the_connection_was_refused(tmp_path):
    from tests.support.peers import HOST, free_port

    url = f"http://{HOST}:{free_port()}/dicom-web"
    kiosk = Kiosk(tmp_path, web_config(tmp_path, url, password=None))
    result = kiosk("echo", "web", check=1)
    assert f"cannot connect to web ({url}): connection refused" in result.stderr


def test_a_file_goes_as_it_is_unless_transfer_syntax_asks_for_another(tmp_path):
    made = make_instances(tmp_path / "in", 1)
    ((uid, path),) = made.items()
    with StowServer() as server:
        kiosk = Kiosk(tmp_path, outbox_config(tmp_path, {
            "same": {"stow_url": server.url, "transfer_syntax": "explicit"},  # the file's own
            "jls": {"stow_url": server.url, "transfer_syntax": "jpeg-ls"}}))
        kiosk("store", str(path), "--to", "same")
        kiosk("store", str(path), "--to", "jls")
    verbatim, converted = (request.parts[0] for request in server.requests)
    assert verbatim == path.read_bytes()
    original, sent = pydicom.dcmread(path), pydicom.dcmread(BytesIO(converted))
    assert sent.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80" and sent.SOPInstanceUID == uid
    assert (sent.pixel_array == original.pixel_array).all()


def test_stopping_the_outbox_does_not_wait_for_a_stow_answer(tmp_path):
    """SIGTERM while the server takes its time: the request is given up after a grace, not after
    network_timeout (60 s, longer than systemd waits), and the jobs are queued again, not an attempt."""
    import signal
    import time

    made = make_instances(tmp_path / "in", 2)
    with StowServer([Behaviour(delay=40)]) as server:
        config = web_config(tmp_path, server.url, password=None)
        kiosk = Kiosk(tmp_path, config)
        outbox = Outbox.from_config(config)
        try:
            queue(outbox, config, sorted(made.values()), "web")
        finally:
            outbox.close()
        proc = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(kiosk.config_file), "outbox", "run"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.requests, "the request never arrived"
            stopped = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            elapsed = time.monotonic() - stopped
        finally:
            proc.kill()
    assert elapsed < 10, f"stopping took {elapsed:.1f} s"
    assert proc.returncode == 0 and "Traceback" not in err, out + err
    jobs = kiosk.jobs()
    assert [job["state"] for job in jobs] == ["queued", "queued"] and [job["attempts"] for job in jobs] == [0, 0]


def test_a_bearer_token_is_sent_and_a_wrong_one_named_never_shown(tmp_path):
    made = make_instances(tmp_path / "in", 2)
    good, wrong = "tok.EN-123_abc~+/=", "n0t-the-t0ken"
    with StowServer(token=good) as server:
        right = Kiosk(tmp_path / "right", outbox_config(tmp_path / "right", {"web": {
            "stow_url": server.url, "token_file": str(secret_file(tmp_path / "good.token", good))}}))
        assert "2 of 2 instance(s) stored" in right("store", str(tmp_path / "in"), "--to", "web").stdout
        bad = Kiosk(tmp_path / "bad", outbox_config(tmp_path / "bad", {"web": {
            "stow_url": server.url, "token_file": str(secret_file(tmp_path / "wrong.token", wrong))}}))
        refused = bad("echo", "web", check=1)
        stored = bad("store", str(tmp_path / "in"), "--to", "web", check=1)
    assert sorted(server.received_uids()) == sorted(made)
    assert "refused our credentials (HTTP 401" in refused.stderr and "token_file" in refused.stderr
    assert "refused our credentials" in stored.stderr
    assert good not in right.seen + right.log() and wrong not in bad.seen + bad.log()


def test_a_token_file_with_more_than_a_token_is_refused_without_showing_it(tmp_path):
    secret_text = "first line\nsecond-line"
    kiosk = Kiosk(tmp_path, outbox_config(tmp_path, {"web": {
        "stow_url": "http://127.0.0.1:9/dicom-web", "token_file": str(secret_file(tmp_path / "t", secret_text))}}))
    result = kiosk("echo", "web", check=1)
    assert "does not hold a bearer token" in result.stderr
    assert "first line" not in kiosk.seen and "second-line" not in kiosk.seen


def test_a_redirect_is_not_followed_and_names_where_to(tmp_path):
    make_instances(tmp_path / "in", 1)
    with StowServer([Behaviour(status=301, location="https://pacs.example.org/dicom-web/studies")]) as server:
        kiosk = Kiosk(tmp_path, web_config(tmp_path, server.url, password=None))
        result = kiosk("store", str(tmp_path / "in"), "--to", "web", check=1)
    assert "redirects its DICOMweb requests to 'https://pacs.example.org/dicom-web/studies'" in result.stderr
    assert "set stow_url of [destinations.web]" in result.stderr
    assert len(server.requests) == 1


def test_jobs_queued_for_a_dicom_node_go_over_stow_once_it_is_configured_so(tmp_path):
    """A configured destination is reached with today's settings, its kind included."""
    from kiosk.outbox.destinations import DicomDestination, StowDestination, destination_from_spec

    url = "http://127.0.0.1:9/dicom-web"
    old_spec = DicomDestination.spec_of(outbox_config(tmp_path, {"web": {
        "ae_title": "PACS", "host": "127.0.0.1", "port": 104}}).destinations["web"])
    destination = destination_from_spec("web", old_spec, web_config(tmp_path, url, password=None))
    assert isinstance(destination, StowDestination) and destination.node.stow_url == url
    destination.close()


def test_storage_commitment_of_a_stow_destination_is_asked_of_its_dicom_side(tmp_path, orthanc_web):
    """Orthanc takes STOW-RS on its HTTP port; its DICOM AE confirms what arrived (commitment_node)."""
    orthanc_web.clear()
    made = make_instances(tmp_path / "in", 3, patient_id="STOW9")
    web = {"stow_url": orthanc_web.dicomweb_url, "username": ORTHANC_WEB_USER, "storage_commitment": True,
           "password_file": str(secret_file(tmp_path / "web.password", ORTHANC_WEB_PASSWORD)), "commitment_node": "archive"}
    archive = {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc_web.port}
    config = outbox_config(tmp_path, {"web": web, "archive": archive})
    kiosk = Kiosk(tmp_path, to_toml(config).replace("port = 11112", f"port = {orthanc_web.extra['kiosk_port']}", 1))
    assert "storage commitment asked of archive" in kiosk("send", str(tmp_path / "in"), "--to", "web",
                                                           "--explain").stdout
    result = kiosk("send", str(tmp_path / "in"), "--to", "web", "--wait")
    assert "3 of 3 job(s) delivered, 3 committed" in result.stdout
    assert {job["state"] for job in kiosk.jobs()} == {"committed"}
    stored = kiosk("store", str(tmp_path / "in"), "--to", "web", "--commit").stdout
    assert "storage commitment: 3 committed, 0 failed, 0 not confirmed" in stored
    assert set(arrived(orthanc_web)) == set(made)
