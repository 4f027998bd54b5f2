"""DICOM over TLS against storescp with certificates from a test CA made here (openssl)."""

from __future__ import annotations

import dataclasses
import subprocess

import pydicom
import pytest

from kiosk.config import LocalConfig, TLSConfig, parse_node_url
from kiosk.net.echo import echo
from kiosk.net.errors import NetworkError
from kiosk.net.store import store_files
from tests.support.net_data import make_sc
from tests.support.peers import free_port, require_binary, start

LOCAL = LocalConfig()


def _openssl(*args: str, cwd) -> None:
    subprocess.run([require_binary("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder)


def make_cert(folder, name: str, ca: str, san: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=folder)
    (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder, "testca")
    make_ca(folder, "otherca")
    make_cert(folder, "server", "testca", "IP:127.0.0.1,DNS:localhost")
    make_cert(folder, "client", "testca", "DNS:kiosk")
    return folder


@pytest.fixture
def tls_storescp(pki, tmp_path):
    binary = require_binary("storescp")
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    argv = [binary, "-aet", "TLSSCP", "-od", str(received), "+tls", str(pki / "server.key"), str(pki / "server.crt"),
            "-pw", "+cf", str(pki / "testca.crt"), "-rc", str(port)]
    peer = start("storescp-tls", "TLSSCP", port, argv, tmp_path, received=received)
    yield peer
    peer.stop()


def tls_node(peer, pki, ca="testca", client=True, host="127.0.0.1"):
    tls = TLSConfig(ca=str(pki / f"{ca}.crt"), cert=str(pki / "client.crt") if client else "",
                    key=str(pki / "client.key") if client else "")
    return dataclasses.replace(parse_node_url(f"{peer.aet}@{host}:{peer.port}"), tls=tls)


def test_echo_and_store_over_tls(tls_storescp, pki, tmp_path):
    node = tls_node(tls_storescp, pki)
    assert echo(node, LOCAL).status == 0x0000
    path = make_sc(tmp_path / "tls.dcm", 200, 100)
    assert store_files(node, LOCAL, [path]).ok
    [arrived] = tls_storescp.extra["received"].iterdir()
    assert pydicom.dcmread(arrived).PixelData == pydicom.dcmread(path).PixelData


def test_server_certificate_from_another_ca_is_refused(tls_storescp, pki):
    with pytest.raises(NetworkError) as caught:
        echo(tls_node(tls_storescp, pki, ca="otherca"), LOCAL)
    assert "TLS: the certificate of" in caught.value.message and "could not be verified" in caught.value.message
    assert not caught.value.transient


def test_certificate_for_another_host_name_is_refused(tls_storescp, pki):
    # The server certificate names 127.0.0.1 and localhost, not 127.0.0.2.
    with pytest.raises(NetworkError) as caught:
        echo(tls_node(tls_storescp, pki, host="127.0.0.2"), LOCAL)
    assert "could not be verified" in caught.value.message and "127.0.0.2" in caught.value.hint


def test_missing_client_certificate_is_reported(tls_storescp, pki):
    with pytest.raises(NetworkError) as caught:
        echo(tls_node(tls_storescp, pki, client=False), LOCAL)
    assert caught.value.message.endswith("closed the TLS connection during association set-up")
    assert "client certificate" in caught.value.hint and not caught.value.transient


def test_a_ca_file_that_is_not_pem_at_use_names_the_file(tmp_path):
    """Valid at config check, replaced since: a NetworkError naming the file, not 'internal error: SSLError'."""
    bad = tmp_path / "ca.crt"
    bad.write_bytes(b"\x30\x82 DER or garbage")
    node = dataclasses.replace(parse_node_url("TLSSCP@127.0.0.1:104"), tls=TLSConfig(ca=str(bad)))
    with pytest.raises(NetworkError) as caught:
        echo(node, LOCAL)
    assert str(bad) in caught.value.message and "PEM" in caught.value.hint and not caught.value.transient


def test_tls_destination_whose_peer_speaks_plain_tcp_needs_a_person(storescp, pki, tmp_path):
    """storescp without +tls hangs up on the ClientHello: a configuration error, not a transient failure."""
    from tests.support.outbox_helpers import deliver, outbox_config, queue

    from kiosk.outbox import Outbox

    node = tls_node(storescp, pki)
    with pytest.raises(NetworkError) as caught:
        echo(node, LOCAL)
    assert not caught.value.transient
    assert "TLS handshake" in caught.value.message and "does not seem to speak TLS" in caught.value.message
    assert "[tls]" in caught.value.hint

    tls = {"ca": node.tls.ca, "cert": node.tls.cert, "key": node.tls.key}
    config = outbox_config(tmp_path, {"pacs": {"ae_title": storescp.aet, "host": "127.0.0.1", "port": storescp.port,
                                               "tls": tls}})
    outbox = Outbox.from_config(config)
    jobs = queue(outbox, config, [make_sc(tmp_path / "a.dcm")], "pacs")
    deliver(outbox, config, jobs)
    [job] = outbox.journal.jobs_by_id(jobs)
    assert job.state == "failed" and job.attempts == 0 and "does not seem to speak TLS" in job.reason
    outbox.close()
