"""Security Alerts of the network layer: TLS with a node that fails (DCMTK storescp over TLS)."""

from __future__ import annotations

import pytest
from tests.net.test_net_tls import pki, tls_node, tls_storescp  # noqa: F401 (fixtures)

from kiosk.audit import trail
from kiosk.config import parse_config
from kiosk.net.echo import echo
from kiosk.net.errors import NetworkError

LOCAL = parse_config({}).local


@pytest.fixture
def private_trail(tmp_path):
    trail.configure(parse_config({}), tmp_path / "audit")
    yield trail.queue()
    trail.configure(parse_config({}))


@pytest.mark.parametrize("ca, client, why", [("otherca", True, "self-signed certificate in certificate chain"),
                                             ("testca", False, "closed the TLS connection")])
def test_a_failed_tls_handshake_is_a_node_authentication_alert(tls_storescp, pki, private_trail, ca, client, why):  # noqa: F811
    with pytest.raises(NetworkError):
        echo(tls_node(tls_storescp, pki, ca=ca, client=client), LOCAL)
    [alert] = [e for e in private_trail.entries() if e.event == "Security Alert"]
    assert alert.event_type == "Node Authentication" and alert.outcome == 8
    assert why.encode() in alert.frame and b"TLSSCP@127.0.0.1" in alert.frame


def test_a_tls_association_that_works_raises_no_alert(tls_storescp, pki, private_trail):  # noqa: F811
    assert echo(tls_node(tls_storescp, pki), LOCAL).status == 0
    assert not [e for e in private_trail.entries() if e.event == "Security Alert"]
