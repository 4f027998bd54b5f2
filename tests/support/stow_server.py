"""A small STOW-RS origin server for what Orthanc cannot be made to answer: failure reasons, 409,
503, a slow answer, a connection dropped after the request, a request size limit.

``http.server`` in a thread on 127.0.0.1 (HTTPS with ``tls``). Each request takes the next behaviour of ``script``
(then ``"ok"``); every request is recorded (its Content-Length and SOP Instance UIDs), also
those answered with an error. The multipart body is split with the standard library's
``email`` parser: good enough for a test peer (the kiosk itself parses no multipart).
"""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pydicom
from tests.support.peers import HOST, free_port

SC = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class Received:
    """One request as the server saw it."""

    content_length: int
    uids: list[str]
    chunked: bool = False
    parts: list[bytes] = field(default_factory=list)  # each instance as it arrived


@dataclass
class Behaviour:
    """What to answer to one request.

    ``status``: the HTTP status; ``failures``: SOP Instance UID -> FailureReason (the others
    referenced as stored, with ``warnings`` UID -> WarningReason); ``retry_after`` a header;
    ``delay``: seconds before answering; ``drop``: close the connection after reading the
    request, without an answer.
    """

    status: int = 200
    failures: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    retry_after: int | None = None
    delay: float = 0.0
    drop: bool = False
    location: str = ""  # with a 3xx status: where to
    all_fail: int | None = None  # every instance failed with this reason (409)


def _sequence(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": items}


def _reference(uid: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"00081150": {"vr": "UI", "Value": [SC]}, "00081155": {"vr": "UI", "Value": [uid]}, **(extra or {})}


class StowServer:
    """``StowServer(script=[Behaviour(...)], max_bytes=N)``; ``url`` is the DICOMweb base URL; ``requests``
    what arrived. ``max_bytes``: larger requests are answered 413; ``token``: requests without
    ``Authorization: Bearer TOKEN`` are answered 401 (and not recorded); ``client_ca`` (with ``tls``):
    only clients with a certificate that CA signed get through the handshake. Use as a context manager."""

    def __init__(self, script: list[Behaviour] | None = None, max_bytes: int | None = None,
                 tls: tuple[str, str] | None = None, token: str | None = None, client_ca: str | None = None) -> None:
        self.tls = tls
        self.token = token
        self.script = list(script or [])
        self.max_bytes = max_bytes
        self.requests: list[Received] = []
        self.port = free_port()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if server._authorized(self):
                    self._reply(200, [])

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                server._post(self)

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._handler = Handler
        self._server = http.server.ThreadingHTTPServer((HOST, self.port), Handler)
        self._server.daemon_threads = True
        if tls is not None:  # (certificate, key) PEM files
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            if client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="stow-server", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}/dicom-web"

    def __enter__(self) -> "StowServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def received_uids(self) -> list[str]:
        """Every SOP Instance UID of every request, in order (repeats kept)."""
        return [uid for request in self.requests for uid in request.uids]

    def _authorized(self, handler: Any) -> bool:
        if self.token is None or handler.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        handler._reply(401, None, {"WWW-Authenticate": 'Bearer realm="test"'})
        return False

    def _post(self, handler: Any) -> None:
        if not self._authorized(handler):
            return
        length = int(handler.headers.get("Content-Length", 0))
        body = handler.rfile.read(length)
        content_type = handler.headers.get("Content-Type", "")
        with self._lock:
            behaviour = self.script.pop(0) if self.script else Behaviour()
        parts = _parts(content_type, body)
        uids = [str(pydicom.dcmread(BytesIO(part), stop_before_pixels=True).SOPInstanceUID) for part in parts]
        self.requests.append(Received(length, uids, "chunked" in handler.headers.get("Transfer-Encoding", ""), parts))
        if behaviour.delay:
            time.sleep(behaviour.delay)
        if behaviour.drop:
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        if self.max_bytes is not None and length > self.max_bytes:
            handler._reply(413, None)
            return
        if behaviour.status >= 300 and behaviour.status != 409:
            headers = {"Retry-After": str(behaviour.retry_after)} if behaviour.retry_after else {}
            handler._reply(behaviour.status, None, {**headers, **({"Location": behaviour.location}
                                                                 if behaviour.location else {})})
            return
        failures = {uid: behaviour.all_fail for uid in uids} if behaviour.all_fail else behaviour.failures
        stored = [_reference(uid, {"00081196": {"vr": "US", "Value": [behaviour.warnings[uid]]}}
                             if uid in behaviour.warnings else None) for uid in uids if uid not in failures]
        failed = [_reference(uid, {"00081197": {"vr": "US", "Value": [failures[uid]]}}) for uid in uids if uid in failures]
        answer: dict[str, Any] = {}
        if stored:
            answer["00081199"] = _sequence(stored)
        if failed:
            answer["00081198"] = _sequence(failed)
        handler._reply(behaviour.status if behaviour.status != 200 or not failed else 202, answer)


def _parts(content_type: str, body: bytes) -> list[bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [part.get_payload(decode=True) for part in message.iter_parts()]
