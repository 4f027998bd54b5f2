"""Syslog for audit messages: RFC 5424 messages, sent over TLS (RFC 5425) or UDP (RFC 5426).

TLS frames are octet-counted (``LEN SP MSG``). After a batch the sender closes
with a TLS close_notify and waits for the repository to close in turn: only
then were all its messages read, and only then do they count as delivered (a
batch that was cut off is sent again, so a repository may see a message
twice, never none). UDP has no answer: a datagram sent counts as delivered.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Sequence

APP_NAME = "kiosk"
MSGID = "IHE+RFC-3881"
FACILITY_AUTHPRIV = 10  # security/authorization messages (RFC 5424 table 1)
SEVERITY_NOTICE, SEVERITY_WARNING = 5, 4
BOM = b"\xef\xbb\xbf"
UDP_MAX = 65507  # RFC 5426: the largest IPv4 UDP payload


class TransportError(Exception):
    """Delivery failed; ``message`` says why and what to do, for the log and ``kiosk audit list``."""

    def __init__(self, message: str, sent: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.sent = sent  # frames delivered before the failure (UDP)


@dataclass(frozen=True)
class Repository:
    """The Audit Record Repository of ``[audit] repository``."""

    scheme: str  # "tls" or "udp"
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> "Repository | None":
        """``tls://host:port`` or ``udp://host:port``; None for "" (kept locally only)."""
        match = re.fullmatch(r"(tls|udp)://\[?([^\]]+?)\]?:([0-9]{1,5})", url)
        return cls(match.group(1), match.group(2), int(match.group(3))) if match else None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def frame(xml: bytes, when: dt.datetime, hostname: str, procid: int, failure: bool = False) -> bytes:
    """The RFC 5424 message: ``<PRI>1 TIMESTAMP HOSTNAME kiosk PROCID IHE+RFC-3881 - BOM XML``."""
    pri = FACILITY_AUTHPRIV * 8 + (SEVERITY_WARNING if failure else SEVERITY_NOTICE)
    host = re.sub(r"[^!-~]", "", hostname)[:255] or "-"
    stamp = when.astimezone().isoformat(timespec="microseconds")
    return f"<{pri}>1 {stamp} {host} {APP_NAME} {procid} {MSGID} - ".encode("ascii") + BOM + xml


def tls_context(ca: str = "", cert: str = "", key: str = "") -> ssl.SSLContext:
    """Server certificate checked (against ``ca``, else the system's CAs) with its host name; TLS 1.2+."""
    try:
        context = ssl.create_default_context(cafile=ca or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"cannot load the [audit] certificates ({_reason(exc)}); check [audit] ca, cert "
                             "and key") from None
    return context


def send_tls(repository: Repository, context: ssl.SSLContext, frames: Sequence[bytes], timeout: float = 5.0) -> None:
    """Send ``frames`` in one connection and wait until the repository has read them all."""
    where = str(repository)
    try:
        raw = socket.create_connection((repository.host, repository.port), timeout=timeout)
    except socket.gaierror as exc:
        raise TransportError(f"cannot find the audit repository's host {repository.host} ({exc.strerror}); "
                             "check [audit] repository") from None
    except OSError as exc:
        raise TransportError(f"cannot connect to the audit repository {where} ({_reason(exc)}); "
                             "it may be down: the messages wait and are sent when it answers") from None
    with raw:
        try:
            tls = context.wrap_socket(raw, server_hostname=repository.host)
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(f"the audit repository {where} is not trusted ({exc.verify_message}); "
                                 "check [audit] ca (the CA that signed its certificate) and the host name "
                                 "in [audit] repository") from None
        except (ssl.SSLError, OSError) as exc:
            raise TransportError(f"TLS with the audit repository {where} failed ({_reason(exc)}); check that "
                                 "it speaks TLS 1.2 or later and, if it asks for one, [audit] cert and key") from None
        try:
            tls.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))
        except OSError as exc:
            raise TransportError(f"the audit repository {where} closed the connection ({_reason(exc)}); "
                                 "the messages are sent again") from None
        _confirm(tls, where)


def _confirm(tls: ssl.SSLSocket, where: str) -> None:
    """Close with close_notify and wait for the repository's own close: it read everything before it."""
    try:
        tls.unwrap()
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
        return  # closed by the repository after reading our close_notify
    except (ssl.SSLError, OSError) as exc:
        raise TransportError(f"the audit repository {where} did not confirm the messages ({_reason(exc)}); "
                             "they are sent again") from None


def send_udp(repository: Repository, frames: Sequence[bytes]) -> int:
    """Send each frame as one datagram; how many went (a refusal stops the rest)."""
    sent = 0
    try:
        with socket.socket(_family(repository.host), socket.SOCK_DGRAM) as sock:
            sock.connect((repository.host, repository.port))
            for data in frames:
                # A longer message could never go and would hold up the queue: the repository gets it cut.
                sock.send(data[:UDP_MAX])
                sent += 1
    except socket.gaierror as exc:
        raise TransportError(f"cannot find the audit repository's host {repository.host} ({exc.strerror}); "
                             "check [audit] repository") from None
    except OSError as exc:
        raise TransportError(f"the audit repository {repository} refused UDP messages ({_reason(exc)}); "
                             "the others wait", sent) from None
    return sent


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer in time"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
