"""Network failures as messages for people: what went wrong with which node, and what to check.

``NetworkError.transient`` tells a retrying caller (the outbox) whether trying
again later can help: refused, unreachable, timeout and abort can; a permanent
rejection, a missing presentation context or a TLS failure cannot without a
configuration change.
"""

from __future__ import annotations

import ssl

from kiosk.config import NodeConfig
from kiosk.errors import KioskError


class NetworkError(KioskError):
    """An association-level failure talking to ``node``.

    ``partial``: for a batch that failed midway, the results so far (a
    ``kiosk.net.store.StoreResult``), else None.
    """

    def __init__(self, message: str, hint: str = "", *, node: NodeConfig | None = None, transient: bool = True) -> None:
        super().__init__(message, hint)
        self.node = node
        self.transient = transient
        self.partial = None


# PS3.8 Table 9-21: (source, diagnostic) of A-ASSOCIATE-RJ -> (meaning, what to check)
REJECT_REASONS: dict[tuple[int, int], tuple[str, str]] = {
    (1, 1): ("no reason given", "ask the PACS administrator why; check the AE titles and that this station is registered"),
    (1, 2): ("application context name not supported", "the peer does not speak DICOM on this port; check the port"),
    (1, 3): ("calling AE title not recognised",
             "register this station's AE title ({calling}) and address at {node_name}, or fix [local] ae_title"),
    (1, 7): ("called AE title not recognised", "check ae_title of {node_name}: the peer does not answer to {called}"),
    (2, 1): ("no reason given (ACSE)", "ask the PACS administrator why; check the user identity settings"),
    (2, 2): ("protocol version not supported", "the peer needs a different DICOM protocol version; contact its vendor"),
    (3, 1): ("temporary congestion", "the peer is busy; try again later"),
    (3, 2): ("local limit exceeded (too many associations)", "the peer has too many open connections; try again later"),
}


def connection_error(node: NodeConfig, exc: BaseException) -> NetworkError:
    """The failure to open the TCP (and TLS) connection, from the socket's exception."""
    where = f"{node.host}:{node.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return NetworkError(
            f"TLS: the certificate of {node} could not be verified ({exc.verify_message})",
            f"check that the [tls] ca file signed the server's certificate and that the certificate names {node.host!r}",
            node=node, transient=False)
    if isinstance(exc, ssl.SSLError):
        return NetworkError(
            f"TLS handshake with {node} failed ({exc.reason or exc})",
            "check that the peer expects TLS on this port, supports TLS 1.2 or later, and whether it requires a client certificate (cert, key)",
            node=node, transient=False)
    if node.tls and isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        # A plain-DICOM peer reads the TLS ClientHello as a broken PDU and hangs up: no retry will help.
        return NetworkError(
            f"TLS handshake with {node} failed: the peer closed the connection (it does not seem to speak TLS at {where})",
            "check that port is the peer's TLS port, or remove the destination's [tls] settings if it speaks plain DICOM",
            node=node, transient=False)
    if isinstance(exc, ConnectionRefusedError):
        return NetworkError(f"cannot connect to {node}: connection refused at {where}",
                            "check that the DICOM service is running there and that host and port are right",
                            node=node)
    if isinstance(exc, (TimeoutError, ConnectionAbortedError)) or "timed out" in str(exc):
        return NetworkError(f"cannot connect to {node}: no answer from {where} within {node.connect_timeout:g} s",
                            "check the host address, that the machine is on, and firewalls in between",
                            node=node)
    if isinstance(exc, ConnectionResetError):
        return NetworkError(f"{node} closed the connection during set-up",
                            "the peer may expect TLS (or not expect it); check the tls settings and the port",
                            node=node)
    return NetworkError(f"cannot connect to {node} at {where}: {getattr(exc, 'strerror', None) or exc}",
                        "check the network connection, the host address and the port", node=node)


def dns_error(node: NodeConfig, exc: BaseException) -> NetworkError:
    return NetworkError(f"cannot find the host {node.host!r} of {node} ({getattr(exc, 'strerror', None) or exc})",
                        "check the spelling of host, or use its IP address; check this station's DNS settings",
                        node=node)


def reject_error(node: NodeConfig, calling: str, result: int, source: int, diagnostic: int) -> NetworkError:
    meaning, hint = REJECT_REASONS.get((source, diagnostic), (f"source {source}, reason {diagnostic}", "check the AE titles on both sides"))
    permanent = result == 1
    kind = "permanently" if permanent else "for now (transient)"
    return NetworkError(f"{node} rejected the association {kind}: {meaning}",
                        hint.format(calling=calling, called=node.ae_title, node_name=node.name),
                        node=node, transient=not permanent)


def abort_error(node: NodeConfig, during: str) -> NetworkError:
    return NetworkError(f"{node} aborted the association during {during}",
                        "look at the peer's log for the reason; try again later", node=node)


def timeout_error(node: NodeConfig, during: str, seconds: float) -> NetworkError:
    return NetworkError(f"no answer from {node} during {during} within {seconds:g} s",
                        "the peer may be overloaded or the network interrupted; try again, or raise the timeout in the configuration",
                        node=node)


def find_timeout_error(node: NodeConfig, during: str, seconds: float, setting: str) -> NetworkError:
    """A C-FIND that got no answer within ``setting`` (dimse_timeout or network_timeout) seconds."""
    where = (f"in [{node.name}]" if node.name in ("worklist", "query")
             else "for a node configured as [worklist] or [query]" if "@" in node.name
             else f"in [destinations.{node.name}]")
    return NetworkError(f"{during} on {node} timed out: no answer within {seconds:g} s ({setting})",
                        f"the node may be slow with a broad search: narrow it (name, ID, date), or raise {setting} "
                        f"{where} in the configuration", node=node)


def no_context_error(node: NodeConfig, what: str) -> NetworkError:
    return NetworkError(f"{node} accepted none of the proposed presentation contexts for {what}",
                        "the peer is not configured to accept this kind of object from us; check its settings (SOP classes, transfer syntaxes)",
                        node=node, transient=False)
