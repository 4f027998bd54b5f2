"""Our listener with ``[local.tls]``: TLS only, BCP 195, client certificates, the allow-list inside TLS.

Real peers: DCMTK echoscu (``+tls``, ``+tla``, plain) against ``kiosk listen``,
Python's ssl client for TLS 1.1, pynetdicom over TLS as a PACS sending a
storage commitment report. Every test runs on the fast path (the guard makes
the handshake) and on stock pynetdicom (an EVT_CONN_OPEN handler makes it).
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid
from pynetdicom import evt
from tests.core.test_config import check
from tests.net.test_listener_attacks import STRANGER, connect, hung_up
from tests.net.test_listener_service import Service
from tests.net.test_net_tls import make_ca, make_cert
from tests.support.net_data import ScriptedSCP
from tests.support.outbox_helpers import outbox_config
from tests.support.peers import HOST, free_port, require_binary

from kiosk.config import ListenerTLSConfig, LocalConfig, parse_config, parse_node_url, to_toml, values_of
from kiosk.net import fastpath
from kiosk.net.alerts import ASSOCIATION_REJECTED, LINES_LOGGED, TLS_FAILURE
from kiosk.net.commitment import STORAGE_COMMITMENT, request_commitment
from kiosk.net.errors import NetworkError
from kiosk.net.fastpath.guard import MAX_WAITING
from kiosk.net.listener import Listener
from kiosk.net.listener_tls import HANDSHAKE_TIMEOUT

NOT_RECOGNISED = "calling ae title not recognized"  # DCMTK's spelling
FAILED = "TLS handshake with 127.0.0.1 failed: "


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder, "testca")
    make_ca(folder, "otherca")
    make_cert(folder, "kiosk", "testca", "IP:127.0.0.1,DNS:localhost")  # the listener's certificate
    make_cert(folder, "pacs", "testca", "DNS:pacs")  # a client certificate our CA signed
    make_cert(folder, "intruder", "otherca", "DNS:pacs")  # one from another CA
    return folder


@pytest.fixture(params=[True, False], ids=["fast-path", "stock-pynetdicom"])
def path(request, monkeypatch):
    """The fast path on or off, in this process and in the ``kiosk`` it starts."""
    monkeypatch.setenv(fastpath.ENV_VAR, str(request.param).lower())
    fastpath.enable(request.param)
    return request.param


def listener_tls(pki, *, require: bool = False) -> dict:
    return {"cert": str(pki / "kiosk.crt"), "key": str(pki / "kiosk.key"), "ca": str(pki / "testca.crt"),
            "require_client_cert": require}


def listen(tmp_path, pki, *, require: bool = False) -> tuple[Service, int]:
    """``kiosk listen`` with ``[local.tls]``, accepting PACS@127.0.0.1."""
    port = free_port()
    config = parse_config({"local": {"ae_title": "KIOSK", "port": port, "tls": listener_tls(pki, require=require)},
                           "destinations": {"pacs": {"ae_title": "PACS", "host": HOST, "port": 9}},
                           "outbox": values_of(outbox_config(tmp_path).outbox)})
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    return Service(str(path), port, "listen"), port


def echoscu(port: int, pki, *, cert: str | None = "pacs", calling: str = "PACS",
            tls: bool = True) -> subprocess.CompletedProcess:
    """DCMTK echoscu: ``+tls`` with ``cert`` (None: ``+tla``, no client certificate), or plain."""
    if not tls:
        options = []
    elif cert:
        options = ["+tls", str(pki / f"{cert}.key"), str(pki / f"{cert}.crt"), "+cf", str(pki / "testca.crt")]
    else:
        options = ["+tla", "+cf", str(pki / "testca.crt")]
    return subprocess.run([require_binary("echoscu"), *options, "-aet", calling, "-aec", "KIOSK", HOST, str(port)],
                          capture_output=True, text=True, timeout=30)


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr).lower()


def python_handshake(port: int, maximum: ssl.TLSVersion, ciphers: str) -> BaseException | None:
    """What Python's ssl client offering at most ``maximum`` and TLS 1.2 ``ciphers`` gets (None: a handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1/TLSv1_1: the point of a test
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    context.set_ciphers(ciphers)
    try:
        with socket.create_connection((HOST, port), timeout=10) as sock, context.wrap_socket(sock):
            return None
    except OSError as exc:
        return exc


def test_tls_peers_get_in_and_everyone_else_is_refused(tmp_path, pki, path):
    service, port = listen(tmp_path, pki)
    try:
        assert echoscu(port, pki).returncode == 0
        assert echoscu(port, pki, cert=None).returncode == 0  # no client certificate: asked for, not required
        intruder = echoscu(port, pki, cert="intruder")
        assert intruder.returncode != 0
        plain = echoscu(port, pki, tls=False)
        assert plain.returncode != 0 and "0006:0317" in output(plain)
        stranger = echoscu(port, pki, calling="STRANGER")  # a good certificate, an AE title not configured
        assert stranger.returncode != 0 and NOT_RECOGNISED in output(stranger)
        # OpenSSL 3 offers TLS 1.1 and RSA key exchange only at security level 0.
        assert isinstance(python_handshake(port, ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"), ssl.SSLError)
        assert isinstance(python_handshake(port, ssl.TLSVersion.TLSv1_2, "AES128-SHA:@SECLEVEL=0"), ssl.SSLError)
        assert python_handshake(port, ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256") is None
        result = echoscu(port, pki)  # still serving TLS after all that
        assert result.returncode == 0, output(result)
    finally:
        code, out, err = service.stop()
    assert code == 0, err
    assert f"listening as KIOSK on port {port} with TLS 1.2+ (client certificates verified when sent); " \
           "accepting PACS" in out
    assert FAILED + "its client certificate was refused (unable to get local issuer certificate)" in err
    assert FAILED + "it sent plain DICOM (an A-ASSOCIATE-RQ) to a TLS-only port" in err
    assert FAILED + "it offered only TLS 1.1 or older; TLS 1.2 or newer is required" in err
    assert FAILED + "it offered no BCP 195 cipher suite" in err
    assert "rejected an association from STRANGER at 127.0.0.1: not a configured node" in err
    probe = FAILED + "it closed the connection before the TLS handshake"  # the test's wait for the port
    assert err.count(FAILED) - err.count(probe) == 4
    assert "ERROR" not in err and "Traceback" not in err  # e.g. the DUL choking on a TLS close_notify after rejecting


def test_a_required_client_certificate_must_come_from_our_ca(tmp_path, pki, path):
    service, port = listen(tmp_path, pki, require=True)
    try:
        assert echoscu(port, pki, cert=None).returncode != 0
        assert echoscu(port, pki, cert="intruder").returncode != 0
        result = echoscu(port, pki)
        assert result.returncode == 0, output(result)
    finally:
        code, out, err = service.stop()
    assert code == 0, err
    assert "with TLS 1.2+ (client certificates required)" in out
    assert FAILED + "it sent no client certificate, and [local.tls] require_client_cert is true" in err
    assert FAILED + "its client certificate was refused" in err
    assert "ERROR" not in err and "Traceback" not in err


def test_silent_connections_hold_no_slot_and_are_closed(tmp_path, pki, path):
    """More silent connections than pynetdicom's 10 association slots: the TLS peer still gets in, each is
    closed after the handshake timeout, and none is left counting as an association (stock pynetdicom would
    make the handshake on its accepting thread, one connection at a time, and wait forever for a silent one;
    an association whose handshake failed would then wait its ACSE timeout for a request)."""
    service, port = listen(tmp_path, pki)
    silent = [socket.create_connection((HOST, port)) for _ in range(12)]
    try:
        result = echoscu(port, pki)
        assert result.returncode == 0, output(result)
        assert all(hung_up(sock, within=HANDSHAKE_TIMEOUT + 5) for sock in silent)
        result = echoscu(port, pki)  # the failed handshakes left no association waiting for its request
        assert result.returncode == 0, output(result)
    finally:
        for sock in silent:
            sock.close()
        code, _, err = service.stop()
    assert code == 0, err
    assert FAILED + "no complete TLS handshake within 5 s" in err
    assert "ERROR" not in err and "Traceback" not in err


@pytest.mark.fast_path  # the guard counts connections waiting for their handshake
def test_a_crowd_of_silent_strangers_is_dropped_oldest_first(tmp_path, pki):
    """The guard's limit on waiting connections holds during the TLS handshake too: its closing a
    connection must reach a thread still waiting for the ClientHello."""
    service, port = listen(tmp_path, pki)
    strangers = [connect(port, STRANGER) for _ in range(MAX_WAITING + 14)]
    try:
        result = echoscu(port, pki)
        assert result.returncode == 0, output(result)
        assert sum(hung_up(sock, within=0.5) for sock in strangers) >= 14
    finally:
        for sock in strangers:
            sock.close()
        code, _, err = service.stop()
    assert code == 0, err
    assert f"dropped a connection from {STRANGER}: more than {MAX_WAITING} connections were waiting" in err


def _report_sender(listener_port: int, pki, over_tls: bool, statuses: list):
    """on_action for a PACS that sends the report on a new association to our listener, as Orthanc does."""
    from pynetdicom import AE

    def send(info) -> None:  # noqa: ANN001
        context = ssl.create_default_context(cafile=str(pki / "testca.crt"))
        context.load_cert_chain(str(pki / "pacs.crt"), str(pki / "pacs.key"))
        ds = Dataset()
        ds.TransactionUID = info.TransactionUID
        ds.ReferencedSOPSequence = info.ReferencedSOPSequence
        ae = AE(ae_title="PACS")
        ae.add_requested_context(STORAGE_COMMITMENT)
        assoc = ae.associate(HOST, listener_port, ae_title="KIOSK", tls_args=(context, HOST) if over_tls else None)
        if not assoc.is_established:
            statuses.append(None)
            return
        status, _ = assoc.send_n_event_report(ds, 1, STORAGE_COMMITMENT, "1.2.840.10008.1.20.1.1")
        statuses.append(int(status.Status))
        assoc.release()

    def on_action(event):
        threading.Timer(0.2, send, [event.action_information]).start()
        return 0x0000, None

    return on_action


@pytest.mark.parametrize("over_tls", [True, False], ids=["report-over-tls", "plain-report"])
def test_a_storage_commitment_report_over_tls(pki, path, over_tls):
    port = free_port()
    local = dataclasses.replace(LocalConfig(), port=port, tls=ListenerTLSConfig(**listener_tls(pki)))
    statuses: list = []
    scp = ScriptedSCP(aet="PACS", contexts=[(STORAGE_COMMITMENT, None, True, True)],
                      handlers=[(evt.EVT_N_ACTION, _report_sender(port, pki, over_tls, statuses))])
    uid = generate_uid()
    with scp:
        pacs = parse_node_url(scp.url)
        with Listener(local, [pacs]) as listener:
            outcome = request_commitment(pacs, local, [(SecondaryCaptureImageStorage, uid)], listener=listener,
                                         timeout=3 if not over_tls else 20)
    if over_tls:
        assert outcome.committed == {uid} and statuses == [0x0000]
    else:
        assert outcome.unconfirmed == {uid} and statuses == [None]  # plain DICOM never reaches the listener


@pytest.fixture
def audit_queue(tmp_path):
    """A private audit trail for this test: its queue."""
    from kiosk.audit import trail
    from kiosk.config import parse_config

    trail.configure(parse_config({}), tmp_path / "audit")
    yield trail.queue()
    trail.configure(parse_config({}))


def _audited(queue) -> list[bytes]:
    return [e.frame for e in queue.entries() if e.event == "Security Alert" and e.event_type == "Node Authentication"]


def test_security_alerts_reach_the_hook(pki, path, caplog, audit_queue):
    alerts: list[tuple[str, str, str]] = []
    local = dataclasses.replace(LocalConfig(), port=free_port(), tls=ListenerTLSConfig(**listener_tls(pki)))
    with Listener(local, [parse_node_url(f"PACS@{HOST}:9")], on_security_alert=lambda *a: alerts.append(a)) as ours:
        assert echoscu(ours.port, pki, tls=False).returncode != 0
        assert echoscu(ours.port, pki, calling="STRANGER").returncode != 0
        # The rejection is reported by the association's thread, which may still be at it as echoscu exits.
        deadline = time.monotonic() + 10
        while len(alerts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ours.on_security_alert = lambda *a: 1 / 0  # a broken subscriber costs one line, not the listener
        assert echoscu(ours.port, pki, tls=False).returncode != 0
        assert echoscu(ours.port, pki).returncode == 0
    assert [(kind, host) for kind, host, _ in alerts] == [(TLS_FAILURE, HOST), (ASSOCIATION_REJECTED, HOST)]
    assert alerts[0][2].startswith("it sent plain DICOM") and alerts[1][2] == "calling AE title STRANGER: " \
                                                                            "not a configured node"
    assert "the security alert hook failed on tls-failure from 127.0.0.1: division by zero" in caplog.text
    audited = _audited(audit_queue)  # the audit trail has each alert, the broken hook's too
    assert len(audited) == 3 and b"TLS handshake failed: it sent plain DICOM" in audited[0]
    assert b"association rejected: calling AE title STRANGER" in audited[1]


def test_a_flood_of_plain_connections_is_logged_within_budget_and_all_reach_the_hook(pki, path, caplog, audit_queue):
    alerts: list[tuple[str, str, str]] = []
    local = dataclasses.replace(LocalConfig(), port=free_port(), tls=ListenerTLSConfig(**listener_tls(pki)))
    with caplog.at_level("WARNING", logger="kiosk.net.alerts"), \
            Listener(local, [parse_node_url(f"PACS@{HOST}:9")], on_security_alert=lambda *a: alerts.append(a)) as ours:
        for _ in range(2 * LINES_LOGGED):
            with socket.create_connection((HOST, ours.port)) as sock:
                sock.sendall(b"\x01\x00")  # the start of a plain A-ASSOCIATE-RQ
                assert hung_up(sock, within=HANDSHAKE_TIMEOUT + 5)
        assert echoscu(ours.port, pki).returncode == 0
    assert caplog.text.count(FAILED + "it sent plain DICOM") == LINES_LOGGED
    assert len(alerts) == 2 * LINES_LOGGED and {kind for kind, _, _ in alerts} == {TLS_FAILURE}
    assert len(_audited(audit_queue)) == LINES_LOGGED  # audited as logged: no flood of the repository either


def test_a_certificate_replaced_since_the_config_check_is_a_clear_error(pki, tmp_path):
    """Checked by `kiosk config check`, then overwritten: starting the listener names the key, no traceback."""
    bad = tmp_path / "kiosk.crt"
    bad.write_bytes(b"\x30\x82 DER or garbage")
    tls = ListenerTLSConfig(cert=str(bad), key=str(pki / "kiosk.key"))
    with pytest.raises(NetworkError) as caught:
        Listener(dataclasses.replace(LocalConfig(), port=free_port(), tls=tls), []).start()
    assert f"cannot use [local.tls] cert {bad} with key" in caught.value.message
    assert "local.tls.key" in caught.value.hint and not caught.value.transient


@pytest.mark.parametrize(
    "tls, expected",
    [
        ("key = '{d}/kiosk.key'", "local.tls.cert: missing"),
        ("cert = '{d}/nowhere.crt'", "local.tls.cert:"),
        ("cert = '{d}/kiosk.crt'\nkey = '{d}/pacs.key'", "local.tls.key: cannot be used with '{d}/kiosk.crt'"),
        ("cert = '{d}/kiosk.crt'\nkey = '{d}/kiosk.key'\nca = '{d}/kiosk.key'",
         "local.tls.ca: names '{d}/kiosk.key', which does not hold CA certificates in PEM format"),
        ("cert = '{d}/kiosk.crt'\nkey = '{d}/kiosk.key'\nrequire_client_cert = true",
         "local.tls.ca: missing; require_client_cert needs the CA"),
        ("cert = '{d}/kiosk.crt'\nkey = '{d}/kiosk.key'\nrequire_client_certs = true",
         "local.tls.require_client_certs: unknown key; did you mean 'require_client_cert'?"),
    ],
    ids=["no-cert", "cert-missing", "key-of-another-cert", "ca-not-pem", "required-without-ca", "misspelt-key"],
)
def test_config_check_names_the_bad_local_tls_key(tmp_path, capsys, pki, tls, expected):
    code, err = check(tmp_path, "[local.tls]\n" + tls.format(d=pki), capsys)
    assert code == 2 and expected.format(d=pki) in err and "Traceback" not in err
