"""``[network] fast_path``: off, the kiosk runs on stock pynetdicom, stores to DCMTK and keeps its allow-list;
the setting (and ``$KIOSK_FAST_PATH``) is checked."""

from __future__ import annotations

import os
import subprocess
import sys

import pydicom
import pytest
from tests.support.net_data import make_sc
from tests.support.peers import HOST, free_port
from pynetdicom import AE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification
from pynetdicom.transport import AssociationSocket
from tests.net.test_listener_service import echoscu

from kiosk.config import ConfigError, LocalConfig, parse_config, parse_node_url
from kiosk.net import fastpath
from kiosk.net.listener import Listener
from kiosk.net.nodes import associate, release


def test_with_the_fast_path_off_associations_are_stock_pynetdicom(storescp):
    node = parse_node_url(storescp.url)
    fastpath.enable(False)
    assoc = associate(node, LocalConfig(), [build_context(Verification)])
    try:
        assert type(assoc.ae) is AE
        assert type(assoc.dul) is DULServiceProvider
        assert type(assoc.dul.socket) is AssociationSocket
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        release(assoc)
    fastpath.enable(True)
    assoc = associate(node, LocalConfig(), [build_context(Verification)])
    try:
        assert type(assoc.dul).__name__ == "EventDrivenDUL"
    finally:
        release(assoc)


def test_kiosk_store_to_dcmtk_storescp_with_the_fast_path_off(tmp_path, storescp):
    files = [make_sc(tmp_path / "in" / f"sc{n}.dcm", 64, 48, seed=n) for n in range(3)]
    config = tmp_path / "kiosk.toml"
    config.write_text("[network]\nfast_path = false\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != fastpath.ENV_VAR}
    result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config), "--debug", "store",
                             str(tmp_path / "in"), "--to", storescp.url],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "networking on stock pynetdicom (fast path off by [network] fast_path = false)" in result.stderr
    # pynetdicom's own C-STORE logs each request; the fast path's file sender bypasses it.
    assert result.stderr.count("Sending Store Request") == len(files), result.stderr
    received = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, storescp.extra["received"].rglob("*"))
                if ds is not None}
    for path in files:
        sent = pydicom.dcmread(path)
        assert received[sent.SOPInstanceUID].PixelData == sent.PixelData


def test_with_the_fast_path_off_the_listener_still_takes_configured_nodes_only():
    fastpath.enable(False)
    port = free_port()
    pacs = parse_config({"destinations": {"pacs": {"ae_title": "PACS", "host": HOST, "port": 9}}}).destinations["pacs"]
    with Listener(LocalConfig(ae_title="KIOSK", port=port), [pacs]) as listener:
        assert type(listener._server).__name__ == "ThreadedAssociationServer"  # pynetdicom's own, not the guarded one
        assert echoscu(port, "PACS").returncode == 0
        stranger = echoscu(port, "OTHER")
        assert stranger.returncode != 0
        assert "Calling AE Title Not Recognized" in stranger.stdout + stranger.stderr
        # The right title from another host than the node's.
        ae = AE(ae_title="PACS")
        ae.add_requested_context(Verification)
        assoc = ae.associate(HOST, port, ae_title="KIOSK", bind_address=("127.0.0.2", 0))
        assert assoc.is_rejected and assoc.acceptor.primitive.diagnostic == 0x03


def test_fast_path_must_be_true_or_false():
    with pytest.raises(ConfigError) as raised:
        parse_config({"network": {"fast_path": "no"}})
    assert "network.fast_path: is 'no', must be true or false" in str(raised.value)
    assert parse_config({}).network.fast_path is True
    assert parse_config({"network": {"fast_path": False}}).network.fast_path is False


def test_kiosk_fast_path_environment_variable_is_checked(tmp_path):
    config = tmp_path / "kiosk.toml"
    config.write_text("", encoding="utf-8")
    env = {**os.environ, fastpath.ENV_VAR: "maybe"}
    result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config), "echo", "X@127.0.0.1:9"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "KIOSK_FAST_PATH is 'maybe'" in result.stderr and "set it to true or false" in result.stderr
    assert "Traceback" not in result.stderr
