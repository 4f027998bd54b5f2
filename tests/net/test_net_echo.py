"""C-ECHO and the people-facing association errors, against real peers and raw sockets."""

from __future__ import annotations

import dataclasses
import socket
import threading

import pytest

from kiosk.cli import main
from kiosk.config import LocalConfig, parse_node_url
from kiosk.net.echo import echo
from kiosk.net.errors import NetworkError
from tests.support.peers import HOST, free_port

LOCAL = LocalConfig()


def test_echo_storescp_and_orthanc(storescp, orthanc):
    for peer in (storescp, orthanc):
        result = echo(parse_node_url(peer.url), LOCAL)
        assert result.status == 0x0000 and 0 < result.round_trip <= result.total


def test_cli_echo_prints_status_and_round_trip(storescp, capsys):
    assert main(["echo", storescp.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{storescp.url}: OK, C-ECHO round trip ") and " ms" in out


def test_refused():
    url = f"PACS@{HOST}:{free_port()}"
    with pytest.raises(NetworkError) as caught:
        echo(parse_node_url(url), LOCAL)
    assert caught.value.transient and "connection refused" in caught.value.message and url in caught.value.message


def test_dns_failure(capsys):
    assert main(["echo", "PACS@no-such-host.invalid:104"]) == 1
    err = capsys.readouterr().err
    assert "cannot find the host 'no-such-host.invalid'" in err and "DNS" in err


def test_called_ae_title_not_recognised(orthanc):
    node = parse_node_url(f"WRONGAET@{HOST}:{orthanc.port}")
    with pytest.raises(NetworkError) as caught:
        echo(node, LOCAL)
    error = caught.value
    assert "rejected the association permanently: called AE title not recognised" in error.message
    assert not error.transient and "WRONGAET" in error.hint


def test_reject_read_when_peer_hangs_up_first(orthanc, monkeypatch):
    """Orthanc rejects and closes at once; on a busy machine that happens before
    pynetdicom's requesting thread looks, and it used to call that an abort."""
    import time

    from pynetdicom.acse import ACSE

    send_request = ACSE.send_request

    def slow_requestor(self):  # noqa: ANN001
        send_request(self)
        time.sleep(0.5)

    monkeypatch.setattr(ACSE, "send_request", slow_requestor)
    test_called_ae_title_not_recognised(orthanc)


def _silent_server(behaviour: str):
    """A TCP server that accepts and then says nothing, or closes at once."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen()
    port = server.getsockname()[1]
    held = []

    def serve():
        try:
            conn, _ = server.accept()
        except OSError:
            return
        if behaviour == "close":
            conn.recv(65536)
            conn.close()
        else:
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    return server, port, held


def test_no_answer_during_association_setup_is_a_timeout():
    server, port, held = _silent_server("silent")
    node = dataclasses.replace(parse_node_url(f"PACS@{HOST}:{port}"), acse_timeout=1.0)
    try:
        with pytest.raises(NetworkError) as caught:
            echo(node, LOCAL)
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert caught.value.transient and "within 1 s" in caught.value.message


def test_peer_closing_during_setup_is_reported_as_abort():
    server, port, _ = _silent_server("close")
    try:
        with pytest.raises(NetworkError) as caught:
            echo(parse_node_url(f"PACS@{HOST}:{port}"), LOCAL)
    finally:
        server.close()
    assert caught.value.transient and "aborted the association during association set-up" in caught.value.message


def test_connect_timeout_names_the_node():
    # 192.0.2.0/24 is TEST-NET-1: never routed; inside the test namespace there is no route at all.
    node = dataclasses.replace(parse_node_url("PACS@192.0.2.1:104"), connect_timeout=0.5)
    with pytest.raises(NetworkError) as caught:
        echo(node, LOCAL)
    assert "PACS@192.0.2.1:104" in caught.value.message and caught.value.transient
