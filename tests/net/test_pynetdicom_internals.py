"""The pynetdicom internals kiosk.net patches are still there (an upgrade breaks this test, not a hospital).

kiosk/net/fastpath/ reaches into pynetdicom 3.0: sockets.py (tuned sockets,
the reactor race workaround), reactor.py (the event-driven DUL reactor),
pdata.py (the fast C-STORE of files), __init__.py (sending files unchanged,
the per-host allow-list) and guard.py (each connection read before
pynetdicom, bounded PDUs). The stock path (``[network] fast_path = false``)
relies on documented behaviour only, checked here too: nodes.py reads the
set-up from events, listener.py rejects from an EVT_REQUESTED handler.
pyproject.toml pins ``pynetdicom>=3.0.4,<3.1``; before widening that, make
this test pass on the new version and run tests/net/ both ways
(also with KIOSK_FAST_PATH=false).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest


def _params(func) -> list[str]:  # noqa: ANN001
    return list(inspect.signature(func).parameters)


def _source(obj) -> str:  # noqa: ANN001
    return inspect.getsource(obj)


def missing_internals() -> list[str]:
    """What kiosk.net relies on and this pynetdicom lacks, one line each."""
    from pynetdicom import _config, ae, evt, fsm, transport
    from pynetdicom.acse import ACSE
    from pynetdicom.association import Association
    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dul import DULServiceProvider
    from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ

    checks = [
        ("_config.STORE_SEND_CHUNKED_DATASET (store.py sends files unchanged)",
         lambda: hasattr(_config, "STORE_SEND_CHUNKED_DATASET")),
        ("Association.send_c_store sets request._dataset_path (TLS associations send files unchanged)",
         lambda: "_dataset_path" in _source(Association.send_c_store)),
        ("Association._reactor_checkpoint / _is_paused pause protocol (pdata.py FileSender)",
         lambda: all(name in _source(Association.send_c_store) for name in ("_reactor_checkpoint.clear()", "_is_paused"))),
        ("Association._get_valid_context, _check_received_status, _handle_no_response (pdata.py FileSender)",
         lambda: _params(Association._get_valid_context)[1:5] == ["ab_syntax", "tr_syntax", "role", "context_id"]
         and hasattr(Association, "_check_received_status") and hasattr(Association, "_handle_no_response")),
        ("ApplicationEntity._create_socket(assoc, address, tls_args) (fastpath make_ae)",
         lambda: _params(ae.ApplicationEntity._create_socket)[1:] == ["assoc", "address", "tls_args"]),
        ("ApplicationEntity._require_calling_aet behind require_calling_aet (fastpath serve allow-list)",
         lambda: "_require_calling_aet" in _source(ae.ApplicationEntity.require_calling_aet.fget)),
        ("ACSE iterates ae.require_calling_aet (fastpath serve allow-list)",
         lambda: "require_calling_aet" in _source(ACSE)),
        ("AssociationSocket._create_socket(address) (sockets.py TunedSocket)",
         lambda: _params(transport.AssociationSocket._create_socket)[1:] == ["address"]),
        ("AssociationSocket.connect(primitive) with _is_connected, _ready, provider_queue (sockets.py TunedSocket)",
         lambda: _params(transport.AssociationSocket.connect)[1:] == ["primitive"]
         and all(name in _source(transport.AssociationSocket.connect) for name in ("_is_connected", "_ready", "provider_queue"))),
        ("AssociationSocket.send(bytestream), event_queue, _shutdown_socket (sockets.py TunedSocket)",
         lambda: _params(transport.AssociationSocket.send)[1:] == ["bytestream"]
         and hasattr(transport.AssociationSocket, "event_queue") and hasattr(transport.AssociationSocket, "_shutdown_socket")),
        ("AddressInformation.from_tuple / as_tuple (sockets.py TunedSocket.connect)",
         lambda: hasattr(transport.AddressInformation, "from_tuple") and hasattr(transport.AddressInformation, "as_tuple")),
        ("EVT_PDU_RECV carries the decoded pdu; A-ASSOCIATE-AC/RJ have pdu_type 2/3 and to_primitive() "
         "(nodes.py reads a reject pynetdicom left unread)",
         lambda: 'evt.EVT_PDU_RECV, {"pdu": pdu}' in _source(DULServiceProvider._decode_pdu)
         and (A_ASSOCIATE_AC().pdu_type, A_ASSOCIATE_RJ().pdu_type) == (0x02, 0x03)
         and hasattr(A_ASSOCIATE_RJ, "to_primitive")),
        ("Association.unbind(event, handler) (nodes.py stops watching PDUs after set-up)",
         lambda: _params(Association.unbind)[1:3] == ["event", "handler"]),
        ("EVT_REQUESTED is triggered with requestor.primitive set, and a rejection from its handler skips "
         "negotiation (listener.py, fast path off)",
         lambda: all(name in _source(Association.run_reactor) for name in (
             "self.requestor.primitive = cast(A_ASSOCIATE, primitive)", "evt.trigger(self, evt.EVT_REQUESTED, {})",
             "if not self.is_aborted and not self.is_rejected:"))
         and _params(ACSE.send_reject)[1:] == ["result", "source", "diagnostic"] and evt.EVT_REQUESTED.is_notification),
        ("DULServiceProvider reactor steps: _process_recv_primitive, _is_transport_event, state_machine, "
         "artim_timer, _idle_timer, event_queue, to_provider_queue, _kill_thread (reactor.py)",
         lambda: all(name in _source(DULServiceProvider) for name in (
             "def _process_recv_primitive", "def _is_transport_event", "self.state_machine.do_action(event)",
             "self.artim_timer", "self._idle_timer", "self.event_queue", "self.to_provider_queue",
             "self._kill_thread = True", "make_target(self.run_reactor)"))),
        ("DIMSEServiceProvider.get_msg(block), peek_msg, send_msg(primitive, context_id), maximum_pdu_size",
         lambda: _params(DIMSEServiceProvider.get_msg)[1:] == ["block"] and hasattr(DIMSEServiceProvider, "peek_msg")
         and _params(DIMSEServiceProvider.send_msg)[1:] == ["primitive", "context_id"]
         and hasattr(DIMSEServiceProvider, "maximum_pdu_size")),
        ("the association reactor polls dimse.get_msg(block=False) (sockets.py race workaround)",
         lambda: "self.dimse.get_msg(block=False)" in _source(Association._run_reactor)),
        ("C_STORE.MessageIDBeingRespondedTo (sockets.py tells requests from responses)",
         lambda: hasattr(C_STORE, "MessageIDBeingRespondedTo")),
        ("get_msg waits on dimse.msg_queue, woken by (None, None) (store.py ends a wait after a cancel's abort)",
         lambda: "self.msg_queue.get(" in _source(DIMSEServiceProvider.get_msg)
         and "msg_queue.put((None, None))" in _source(fsm)),
        ("ApplicationEntity.make_server(..., server_class, **kwargs) and _servers (fastpath serve, guarded server)",
         lambda: "server_class" in _params(ae.ApplicationEntity.make_server) and "**kwargs" in _source(ae.ApplicationEntity.make_server)
         and "self.ae._servers.remove" in _source(transport.AssociationServer.shutdown)),
        ("AssociationServer(..., request_handler) (guard.py GuardedHandler)",
         lambda: "request_handler" in _params(transport.AssociationServer.__init__)),
        ("RequestHandler.handle: _create_association, EVT_CONN_OPEN, assoc.start() (guard.py GuardedHandler.handle)",
         lambda: all(name in _source(transport.RequestHandler.handle) for name in (
             "self._create_association()", "evt.EVT_CONN_OPEN", "assoc.start()"))
         and "AssociationSocket(assoc, client_socket=self.request)" in _source(transport.RequestHandler._create_association)),
        ("the DUL reads a PDU as socket.recv(6) then socket.recv(pdu_length), a short read as closed (guard.py)",
         lambda: all(name in _source(DULServiceProvider._read_pdu_data) for name in (
             "self.socket.recv(6)", "self.socket.recv(pdu_length)", "len(bytestream) != 6 + pdu_length"))
         and isinstance(transport.AssociationSocket.ready, property)),
        ("ACSE.send_reject keeps the rejection in acceptor.primitive (listener.py logs its reason)",
         lambda: "self.acceptor.primitive = primitive" in _source(ACSE.send_reject)),
    ]
    problems = []
    for what, check in checks:
        try:
            ok = check()
        except (AttributeError, TypeError, OSError, ValueError) as exc:
            ok, what = False, f"{what} [{type(exc).__name__}: {exc}]"
        if not ok:
            problems.append(what)
    return problems


def test_pynetdicom_internals_kiosk_patches_are_present():
    problems = missing_internals()
    if problems:
        pytest.fail(f"pynetdicom {version('pynetdicom')} no longer has internals kiosk.net patches:\n  - "
                    + "\n  - ".join(problems)
                    + "\nadapt kiosk/net/fastpath/ (and nodes.py, listener.py for the stock path) to it, or keep the pin "
                      "pynetdicom>=3.0.4,<3.1 in pyproject.toml; meanwhile [network] fast_path = false", pytrace=False)


def test_the_installed_pynetdicom_is_within_the_pin():
    from packaging.version import Version

    installed = Version(version("pynetdicom"))
    assert Version("3.0.4") <= installed < Version("3.1"), (
        f"pynetdicom {installed} is outside the tested range >=3.0.4,<3.1 (pyproject.toml); "
        "install a version in range, or check tests/net/test_pynetdicom_internals.py passes and widen the pin")
