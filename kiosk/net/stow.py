"""STOW-RS user agent (PS3.18 10.5): instances POSTed to a DICOMweb origin server, one outcome each.

A batch goes as ``POST {stow_url}/studies`` requests of at most
``max_request_mb`` each, ``multipart/related; type="application/dicom"``.
Each body is read from the files while it is sent (a file-like object of
known length, so a Content-Length goes with it: not every server takes
chunked uploads), so memory stays flat whatever the batch. Every file is
opened with ``open_checked`` when its turn comes: one that no longer holds
what was accepted abandons that request, which is sent again without it.

The answer is DICOM JSON (pydicom ``Dataset.from_json``), read per instance:

- in ReferencedSOPSequence: success, or warning when it has a WarningReason;
- in FailedSOPSequence: failed, or transient for FailureReason A7xx
  (``failure_outcome``);
- in neither: transient (the server did not say).

HTTP statuses: 200, 202 and 409 are read per instance; 400, 415 fail the
request's instances; 413 splits the request in two, down to one instance,
which then fails; 401/403 (credentials) and 404 (URL) stop the batch without
retry; 5xx (503 with Retry-After too) is transient. A connection that cannot
be opened, or fails before the whole body was sent, is transient; one lost
after the whole body was sent leaves that request's instances ``in_flight``
(a re-send repeats the same SOP Instance UIDs).
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from kiosk.audit.transfers import Transfer
from kiosk.checksum import CHUNK, FileChanged, open_checked
from kiosk.config import NodeConfig, TLSConfig
from kiosk.net import errors
from kiosk.net.cancel import CancelWatch

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

MB = 1_000_000
OVERHEAD = 100  # bytes of boundary and headers counted per part (and for the end) when splitting a batch
DICOM_JSON = "application/dicom+json"
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token
TRANSIENT_REASONS = {0x0213}  # "Resource limitation" (PS3.7 C.4), A7xx's meaning in N-service codes
# PS3.18 10.5.3 names these beyond the C-STORE statuses status_meaning knows.
REASONS = {0xC122: "Referenced Transfer Syntax not supported", 0x0122: "Referenced SOP Class not supported",
           0x0124: "Not authorized", 0x0110: "Processing failure"}

#: Called with (instances answered, bytes sent) while a batch is being sent.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Part:
    """One instance to send: its file (or, converted, its bytes in ``data``) and identity.

    ``sha256``: what the file must still hold (checked on the bytes sent); None: not checked.
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    size: int
    sha256: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Result:
    """What became of one part: success, warning, transient, failed or damaged (as ``kiosk.outbox.Outcome``).

    ``http_status``: set when the server refused the whole request (400, 415 ...), not per instance.
    """

    outcome: str
    status: int | None = None
    message: str = ""
    in_flight: bool = False
    http_status: int | None = None


#: Failure reasons that say the server does not take the instance's SOP class or transfer syntax
#: (PS3.18 10.5.3; A900 as archives answer that from the C-STORE statuses): a video object then
#: goes as its fallback (``refuses_kind``).
KIND_REFUSED = frozenset({0xA900, 0x0122, 0xC122})


def refuses_kind(result: Result) -> bool:
    """Whether ``result`` says the server does not take the instance's kind: a failure reason in
    ``KIND_REFUSED``, or HTTP 415 (Unsupported Media Type) to its request."""
    return result.outcome == "failed" and (result.status in KIND_REFUSED or result.http_status == 415)


@dataclass(frozen=True)
class CheckResult:
    """A QIDO-RS search answered: its HTTP status and round trip (s)."""

    http_status: int
    round_trip: float


def failure_outcome(reason: int) -> str:
    """``transient`` or ``failed`` for a FailureReason (0008,1197).

    PS3.18 10.5.3 takes its failure reasons from the C-STORE statuses of PS3.4
    B.2.3. Only A7xx, "Refused: Out of Resources" (a full disk, a busy
    archive), says the same instance may be stored later, so only it is
    retried, as for C-STORE (``kiosk.net.store.classify``); 0213 "Resource
    limitation" means the same where a server borrows the N-service codes.
    The others describe the instance or the server's set-up and would get the
    same answer again: A9xx (does not match its SOP class), Cxxx and C000
    (cannot understand, C122 transfer syntax not supported), 0122 (SOP class
    not supported), 0124 (not authorised), and 0110 "Processing failure",
    the catch-all with nothing to say a retry helps: a person has to look.
    """
    return "transient" if reason & 0xFF00 == 0xA700 or reason in TRANSIENT_REASONS else "failed"


def reason_text(code: int) -> str:
    """``A700 Refused: Out of Resources``: a failure or warning reason and its meaning."""
    from kiosk.net.store import status_meaning

    return f"{code:04X} {REASONS.get(code) or status_meaning(code)}"


class _Unreadable(Exception):
    """A part's file could not be sent as declared (changed, gone, unreadable): its request is abandoned."""

    def __init__(self, index: int, result: Result) -> None:
        super().__init__(result.message)
        self.index = index
        self.result = result


class _Cancelled(Exception):
    """``cancel`` was set while a body was being sent, or while its answer was awaited past the grace."""


class _TooLarge(Exception):
    """HTTP 413 to one request."""


class _Busy(Exception):
    """HTTP 5xx (or 408, 429) to one request: the server cannot take it now."""


class _Lost(Exception):
    """The request failed as a whole (``error``); ``in_flight``: its body had been sent whole."""

    def __init__(self, error: errors.NetworkError, in_flight: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.in_flight = in_flight


class _Body:
    """The multipart/related body of one request, read from the parts' files as it is sent.

    A file-like object of known ``len()``: requests then sends a Content-Length
    and urllib3 reads it a block at a time.
    """

    def __init__(self, parts: Sequence[Part], boundary: str, sent: Callable[[int], None],
                 cancel: threading.Event | None) -> None:
        self._head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        self._tail = f"--{boundary}--\r\n".encode()
        self._parts = parts
        self._sent = sent
        self._cancel = cancel
        self.length = sum(len(self._head) + part.size + 2 for part in parts) + len(self._tail)
        self.finished = False  # every byte was handed to the connection
        self._chunks = self._generate()
        self._buffer = memoryview(b"")

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.read(CHUNK), b"")

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                self.finished = True
                return b""
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, memoryview(b"")
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return bytes(out)

    def _generate(self) -> Iterator[bytes]:
        for index, part in enumerate(self._parts):
            if self._cancel is not None and self._cancel.is_set():
                raise _Cancelled("cancelled while sending")
            yield self._head
            if part.data is not None:
                yield part.data
            else:
                yield from self._file(index, part)
            yield b"\r\n"
            self._sent(part.size)
        yield self._tail

    @staticmethod
    def _file(index: int, part: Part) -> Iterator[bytes]:
        try:
            handle = open_checked(part.path, part.sha256)
        except FileChanged as exc:
            raise _Unreadable(index, Result("damaged", None, str(exc))) from None
        except OSError as exc:
            raise _Unreadable(index, Result("failed", None, f"cannot read {part.path} ({exc.strerror or exc})")) from None
        left = part.size
        with handle:
            try:
                while chunk := handle.read(min(CHUNK, left + 1)):
                    left -= len(chunk)
                    if left < 0:
                        break
                    yield chunk
            except OSError as exc:
                raise _Unreadable(index, Result("failed", None, f"cannot read {part.path} ({exc.strerror or exc})")) from None
        if left:
            # The declared length went out in the Content-Length: a file that changed size cannot be sent in it.
            raise _Unreadable(index, Result("damaged" if part.sha256 else "failed", None,
                                            f"{part.path} changed size while it was being sent"))


def _adapter(context: ssl.SSLContext, using: list[Any]) -> Any:
    """requests' adapter on our own SSL context (``kiosk.net.nodes.tls_context`` rules: TLS 1.2 or later,
    verified against ``tls.ca`` or the system store, our client certificate), no retries; the
    connection a request goes out on is put in ``using`` (a cancelled wait shuts it down)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def tracked(pool: type, connection: type) -> type:
        class Tracked(connection):  # type: ignore[misc, valid-type]
            def request(self, *args: Any, **kwargs: Any) -> None:
                using[:] = [self]
                super().request(*args, **kwargs)

        return type(pool.__name__, (pool,), {"ConnectionCls": Tracked})

    class ContextAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context  # urllib3 drops it for plain http pools
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": tracked(HTTPConnectionPool, HTTPConnection),
                                                       "https": tracked(HTTPSConnectionPool, HTTPSConnection)}

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            # requests would add certifi's bundle to the context: the system store (or tls.ca) decides.
            conn.cert_reqs = "CERT_REQUIRED"

    return ContextAdapter(max_retries=0)


def _shut_down(connections: list[Any]) -> None:
    """Shut the sockets of ``connections`` down: a read waiting on one returns at once."""
    for connection in connections:
        if (sock := getattr(connection, "sock", None)) is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed meanwhile


def check(node: NodeConfig) -> CheckResult:
    """``StowClient.check`` on a session of its own (``kiosk echo``, the Settings screen's test)."""
    client = StowClient(node)
    try:
        return client.check()
    finally:
        client.close()


def _root_cause(exc: BaseException) -> BaseException:
    """The socket or TLS error under requests' and urllib3's wrappers."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ssl.SSLError, socket.gaierror, ConnectionError, TimeoutError)):
            return current
        reason = getattr(current, "reason", None)
        nested = reason if isinstance(reason, BaseException) else None
        nested = nested or next((a for a in getattr(current, "args", ()) if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return exc


class StowClient:
    """STOW-RS (and the QIDO-RS check of ``kiosk echo``) to one node; one HTTP session kept until ``close``."""

    def __init__(self, node: NodeConfig) -> None:
        self.node = node
        self._session: "requests.Session | None" = None
        self._using: list[Any] = []  # the connection of the request under way

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- what callers use ----------------------------------------------------

    def store(self, parts: Sequence[Part], progress: Progress | None = None,
              cancel: threading.Event | None = None) -> list[Result]:
        """Send ``parts`` in requests of at most ``max_request_mb``; one result per part, in order.

        Raises ``NetworkError`` when the attempt fails as a whole (credentials,
        URL, connection); its ``partial`` then holds a result per part when some
        requests were answered before, or the failing one was sent whole.
        Audited (Begin Transferring, Instances Transferred) per call.
        """
        audit = Transfer(self.node, [part.path for part in parts])
        audit.begin()
        try:
            results = self._store(parts, progress, cancel)
        except errors.NetworkError as exc:
            partial = exc.partial if isinstance(exc.partial, list) else []
            audit.end([(part.path, r.outcome) for part, r in zip(parts, partial)], exc.message)
            raise
        audit.end([(part.path, r.outcome) for part, r in zip(parts, results)])
        return results

    def _store(self, parts: Sequence[Part], progress: Progress | None,
               cancel: threading.Event | None) -> list[Result]:
        results: list[Result | None] = [None] * len(parts)
        state = {"done": 0, "bytes": 0}

        def sent(size: int) -> None:
            state["bytes"] += size
            if progress:
                progress(state["done"], state["bytes"])

        headers = {"Accept": DICOM_JSON, **self._auth_headers()}
        auth = self._basic_auth()
        pending = self._requests(parts)
        while pending:
            indexes = pending.pop(0)
            if cancel is not None and cancel.is_set():
                for i in indexes:
                    results[i] = Result("transient", None, "cancelled before sending")
                continue
            before = state["bytes"]
            try:
                answered = self._post([parts[i] for i in indexes], headers, auth, sent, cancel)
            except _Unreadable as exc:
                # The server got a body cut short and stores nothing of it: again, without that file.
                results[indexes[exc.index]] = exc.result
                state["bytes"] = before
                rest = indexes[:exc.index] + indexes[exc.index + 1:]
                if rest:
                    pending.insert(0, rest)
                continue
            except _Cancelled as exc:
                for i in indexes:
                    results[i] = Result("transient", None, str(exc))
                continue
            except _TooLarge as exc:
                state["bytes"] = before
                if len(indexes) == 1:
                    results[indexes[0]] = Result("failed", None, str(exc))
                else:
                    half = len(indexes) // 2
                    log.warning("%s: a request of %d instances was too large (HTTP 413); sending halves",
                                self.node, len(indexes))
                    pending[:0] = [indexes[:half], indexes[half:]]
                continue
            except _Busy as exc:
                # Not stored, and the requests after this one wait for the retry too.
                for i in indexes:
                    results[i] = Result("transient", None, str(exc))
                for i in (i for rest in pending for i in rest):
                    results[i] = Result("transient", None, f"not sent: {exc}")
                break
            except errors.NetworkError as exc:
                if any(results):
                    exc.partial = self._partial(results, indexes, exc, False)
                raise
            except _Lost as lost:
                if any(results) or lost.in_flight:
                    lost.error.partial = self._partial(results, indexes, lost.error, lost.in_flight)
                raise lost.error from None
            for i, result in zip(indexes, answered):
                results[i] = result
            state["done"] += sum(r.outcome in ("success", "warning") for r in answered)
            if progress:
                progress(state["done"], state["bytes"])
        return [r or Result("transient", None, "not sent") for r in results]

    def check(self) -> CheckResult:
        """A QIDO-RS search (``GET {stow_url}/studies?limit=1``): the server answers and takes our credentials.

        Raises ``NetworkError`` when it cannot be reached, TLS fails, the
        credentials are refused or the answer is not a search result.
        """
        import requests

        session = self._open_session()
        url = f"{self.node.stow_url.rstrip('/')}/studies"
        headers = {"Accept": DICOM_JSON, **self._auth_headers()}
        started = time.perf_counter()
        try:
            response = session.get(url, params={"limit": "1"}, headers=headers, auth=self._basic_auth(),
                                   timeout=(self.node.connect_timeout, self.node.network_timeout),
                                   allow_redirects=False)
        except requests.RequestException as exc:
            raise self._connection_error(exc, "a QIDO-RS search") from None
        round_trip = time.perf_counter() - started
        if response.status_code in (401, 403):
            raise self._credentials_error(response)
        if response.is_redirect:
            raise self._redirect_error(response)
        if not 200 <= response.status_code < 300:
            raise errors.NetworkError(
                f"{self.node} answered a QIDO-RS search (GET {url}) with HTTP {response.status_code} {response.reason}",
                f"check stow_url of {self._where()}: the DICOMweb base URL, e.g. https://pacs.example.org/dicom-web "
                "(a server that takes STOW-RS only may not answer searches)", node=self.node,
                transient=response.status_code >= 500)
        return CheckResult(response.status_code, round_trip)

    # -- requests ------------------------------------------------------------

    def _requests(self, parts: Sequence[Part]) -> list[list[int]]:
        """The parts' indexes in consecutive groups of at most ``max_request_mb`` (a larger part alone)."""
        limit = self.node.max_request_mb * MB
        groups: list[list[int]] = []
        group: list[int] = []
        size = OVERHEAD  # the closing boundary
        for i in range(len(parts)):
            part_size = parts[i].size + OVERHEAD  # the part's boundary, header and CRLF (80 bytes)
            if group and size + part_size > limit:
                groups.append(group)
                group, size = [], OVERHEAD
            group.append(i)
            size += part_size
        return groups + ([group] if group else [])

    def _post(self, parts: Sequence[Part], headers: dict[str, str], auth: tuple[bytes, bytes] | None,
              sent: Callable[[int], None], cancel: threading.Event | None) -> list[Result]:
        import requests

        session = self._open_session()
        boundary = f"kiosk-{uuid.uuid4().hex}"
        body = _Body(parts, boundary, sent, cancel)
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        watch = CancelWatch(cancel, lambda: _shut_down(self._using), "closing the STOW-RS connection",
                            "stow-cancel") if cancel is not None else None
        try:
            # No redirects: requests would re-send a POST as a GET, or a body it cannot rewind.
            response = session.post(f"{self.node.stow_url.rstrip('/')}/studies", data=body,
                                    headers={**headers, "Content-Type": content_type}, auth=auth,
                                    timeout=(self.node.connect_timeout, self.node.network_timeout),
                                    allow_redirects=False)
        except requests.RequestException as exc:
            if watch is not None and watch.fired:
                raise _Cancelled(f"cancelled while waiting for the answer of {self.node}") from None
            raise _Lost(self._connection_error(exc, f"a STOW-RS request of {len(parts)} instance(s)"),
                        body.finished) from None
        finally:
            if watch is not None:
                watch.end()
        return self._answer(response, parts)

    def _answer(self, response: "requests.Response", parts: Sequence[Part]) -> list[Result]:
        status = response.status_code
        what = f"HTTP {status} {response.reason}"
        if status in (401, 403):
            raise self._credentials_error(response)
        if response.is_redirect:
            raise self._redirect_error(response)
        if status == 404:
            raise errors.NetworkError(f"{self.node} has no STOW-RS service at {self.node.stow_url}/studies ({what})",
                                      f"check stow_url of {self._where()}: the DICOMweb base URL, e.g. "
                                      "https://pacs.example.org/dicom-web", node=self.node, transient=False)
        if status == 413:
            raise _TooLarge(f"{self.node} refused the request as too large ({what}); lower max_request_mb of "
                            f"{self._where()} or raise the server's limit")
        if status >= 500 or status in (408, 429):
            later = response.headers.get("Retry-After")
            message = f"{self.node} cannot take it now: {what}" + (f" (it asks to retry after {later} s)" if later else "")
            log.warning("%s", message)
            raise _Busy(message)
        if status in (200, 202, 409):
            return self._per_instance(response, parts, what)
        # 400, 415 and anything else the standard does not give: the same request would get the same answer.
        log.warning("%s refused a STOW-RS request of %d instance(s): %s", self.node, len(parts), what)
        return [Result("failed", None, f"refused by {self.node}: {what}", http_status=status) for _ in parts]

    def _per_instance(self, response: "requests.Response", parts: Sequence[Part], what: str) -> list[Result]:
        from pydicom.dataset import Dataset

        try:
            data = response.json()
            answer = Dataset.from_json(data[0] if isinstance(data, list) and data else data)
            referenced = {str(i.ReferencedSOPInstanceUID): i for i in answer.get("ReferencedSOPSequence", [])}
            failed = {str(i.ReferencedSOPInstanceUID): i for i in answer.get("FailedSOPSequence", [])}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("%s: the answer to a STOW-RS request (%s) is not DICOM JSON: %s", self.node, what,
                        type(exc).__name__)
            return [Result("transient", None, f"{self.node} answered {what} without a readable "
                           "Store Instances Response") for _ in parts]
        results = []
        for part in parts:
            uid = part.sop_instance_uid
            if uid in failed:
                reason = failed[uid].get("FailureReason")
                code = int(reason) if reason is not None else None
                text = reason_text(code) if code is not None else "no failure reason given"
                outcome = failure_outcome(code) if code is not None else "failed"
                log.warning("%s: %s not stored: %s", self.node, part.path.name, text)
                results.append(Result(outcome, code, f"not stored by {self.node}: {text}"))
            elif uid in referenced:
                warning = referenced[uid].get("WarningReason")
                if warning is not None:
                    text = reason_text(int(warning))
                    log.warning("%s: %s stored with warning %s", self.node, part.path.name, text)
                    results.append(Result("warning", int(warning), text))
                else:
                    results.append(Result("success"))
            else:
                results.append(Result("transient", None, f"{self.node} answered {what} without a word on this instance"))
        return results

    @staticmethod
    def _partial(results: list[Result | None], indexes: Sequence[int], exc: errors.NetworkError,
                 in_flight: bool) -> list[Result]:
        """A result per part after ``exc`` ended the run: the failing request's parts in flight if its body
        had gone out whole, the rest unsent."""
        failing = set(indexes)
        return [r if r is not None else Result("transient", None, exc.message, in_flight and i in failing)
                for i, r in enumerate(results)]

    # -- the session, credentials, errors --------------------------------------

    def _open_session(self) -> "requests.Session":
        if self._session is None:
            import requests

            from kiosk.net.nodes import tls_context

            if self.node.stow_url.startswith("http:") and (self.node.username or self.node.token_file):
                log.warning("%s: credentials go over plain HTTP, readable on the network; use an https "
                            "stow_url", self.node)
            session = requests.Session()
            # Settings come from the configuration alone: no proxy variables, no ~/.netrc credentials.
            session.trust_env = False
            adapter = _adapter(tls_context(replace(self.node, tls=self.node.tls or TLSConfig())), self._using)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._session = session
        return self._session

    def _secret(self, key: str) -> str:
        """The password or token, read from its file now (an administrator may have changed it)."""
        path = Path(getattr(self.node, key)).expanduser()
        try:
            text = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise errors.NetworkError(f"cannot read {key} {path} of {self._where()} ({getattr(exc, 'strerror', None) or exc})",
                                      "check the path and that the file is readable (mode 0600)", node=self.node,
                                      transient=False) from None
        if not text:
            raise errors.NetworkError(f"{key} {path} of {self._where()} is empty", "write the secret into it",
                                      node=self.node, transient=False)
        return text

    def _auth_headers(self) -> dict[str, str]:
        if not self.node.token_file:
            return {}
        token = self._secret("token_file")
        if not _TOKEN.fullmatch(token):
            # Checked here: requests would quote a header value it refuses in its error, the token with it.
            raise errors.NetworkError(f"token_file {self.node.token_file} of {self._where()} does not hold a bearer "
                                      "token", "write the token alone on one line (letters, digits, -._~+/ and "
                                      "trailing =)", node=self.node, transient=False)
        return {"Authorization": f"Bearer {token}"}

    def _basic_auth(self) -> tuple[bytes, bytes] | None:
        # UTF-8 (RFC 7617 2.1): requests would encode str as Latin-1 and fail on other characters.
        return (self.node.username.encode(), self._secret("password_file").encode()) if self.node.username else None

    def _where(self) -> str:
        return f"[destinations.{self.node.name}]"

    def _credentials_error(self, response: "requests.Response") -> errors.NetworkError:
        what = f"HTTP {response.status_code} {response.reason}"
        if self.node.username or self.node.token_file:
            return errors.NetworkError(f"{self.node} refused our credentials ({what})",
                                       f"check username and password_file (or token_file) of {self._where()}",
                                       node=self.node, transient=False)
        return errors.NetworkError(f"{self.node} asks for credentials ({what})",
                                   f"set username and password_file, or token_file, in {self._where()}",
                                   node=self.node, transient=False)

    def _redirect_error(self, response: "requests.Response") -> errors.NetworkError:
        # The Location is the server's own URL (no credentials in it: requests sends them in a header).
        where = response.headers.get("Location", "")
        return errors.NetworkError(f"{self.node} redirects its DICOMweb requests to {where!r} "
                                   f"(HTTP {response.status_code} {response.reason})",
                                   f"set stow_url of {self._where()} to the URL it redirects to (e.g. https:// "
                                   "instead of http://); the kiosk does not follow redirects", node=self.node,
                                   transient=False)

    def _connection_error(self, exc: BaseException, during: str) -> errors.NetworkError:
        import requests

        cause = _root_cause(exc)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return errors.timeout_error(self.node, during, self.node.network_timeout)
        if isinstance(cause, socket.gaierror):
            return errors.dns_error(self.node, cause)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return errors.connection_error(self.node, TimeoutError())
        if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ConnectionError)) and not isinstance(
                cause, (ssl.SSLError, ConnectionRefusedError, TimeoutError)):
            # The connection was open and then lost (reset, closed without an answer).
            return errors.NetworkError(f"{self.node} closed the connection during {during}",
                                       "look at the server's log for the reason; try again later", node=self.node)
        return errors.connection_error(self.node, cause if isinstance(cause, OSError) else exc)

