"""The listener's TLS (``[local.tls]``): its server context, the handshake, and why a handshake failed.

Profile: the BCP 195 RFC 8996 TLS Profile of PS3.15 Annex B (RFC 8996, RFC
9325): TLS 1.2 or newer; under TLS 1.2 only ECDHE key exchange with AES-GCM
or ChaCha20-Poly1305; under TLS 1.3 OpenSSL's suites (all AEAD). Client
certificates are verified against ``ca`` when it is given (a certificate from
another CA fails the handshake) and required with ``require_client_cert``.

The handshake is made on the connection's own thread, with a timeout, before
any association exists: a peer that fails it (plain DICOM, an old TLS
version, a wrong or missing certificate, silence) holds no association slot
and is described in one line, never a traceback.
"""

from __future__ import annotations

import os
import socket
import ssl

from kiosk.config import ListenerTLSConfig
from kiosk.net import errors

#: OpenSSL's names for the BCP 195 TLS 1.2 suites we accept (TLS 1.3 suites are configured apart).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
HANDSHAKE_TIMEOUT = 5.0  # seconds from connecting to a complete handshake
ASSOCIATE_RQ_TYPE = 0x01  # what plain DICOM starts with; a TLS ClientHello starts with 0x16


class HandshakeFailed(Exception):
    """Why a connection's TLS handshake failed, in words for the log (``str(exc)``)."""


class _DeferredHandshake(ssl.SSLContext):
    """A server context whose ``wrap_socket`` leaves the handshake to ``handshake``.

    pynetdicom's server wraps each connection on its accepting thread: a
    handshake there would serve one connection at a time, and a silent one
    would stop the listener.
    """

    def wrap_socket(self, sock: socket.socket, server_side: bool = True, do_handshake_on_connect: bool = False,
                    **kwargs: object) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side=True, do_handshake_on_connect=False, **kwargs)


def server_context(tls: ListenerTLSConfig) -> ssl.SSLContext:
    """The listener's context (its ``wrap_socket`` makes no handshake: ``handshake`` does);
    ``NetworkError`` naming the ``[local.tls]`` key whose file cannot be used.

    ``kiosk config check`` checks the files too; this catches one changed since.
    """
    context = _DeferredHandshake(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        # A key with a passphrase would make OpenSSL prompt on the terminal; the kiosk has none to give.
        context.load_cert_chain(os.path.expanduser(tls.cert), os.path.expanduser(tls.key) if tls.key else None,
                                password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        key = "key" if tls.key else "cert"
        raise errors.NetworkError(
            f"cannot use [local.tls] cert {tls.cert}{' with key ' + tls.key if tls.key else ''}: "
            f"{getattr(exc, 'reason', None) or exc}",
            f"local.tls.{key} must be an unencrypted PEM key and certificate that belong together; "
            "check with 'kiosk config check'", transient=False) from None
    if tls.ca:
        try:
            context.load_verify_locations(cafile=os.path.expanduser(tls.ca))
        except (ssl.SSLError, OSError) as exc:
            raise errors.NetworkError(
                f"cannot use [local.tls] ca {tls.ca}: {getattr(exc, 'reason', None) or exc}",
                "local.tls.ca must name PEM CA certificates (-----BEGIN CERTIFICATE-----)", transient=False) from None
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context


def describe(tls: ListenerTLSConfig) -> str:
    """How the listener uses TLS, for ``kiosk listen`` and the log: 'with TLS (client certificates ...)'."""
    if tls.require_client_cert:
        clients = "client certificates required"
    elif tls.ca:
        clients = "client certificates verified when sent"
    else:
        clients = "no client certificates asked for"
    return f"with TLS 1.2+ ({clients})"


def handshake(sock: ssl.SSLSocket, timeout: float) -> None:
    """Make the handshake of ``sock`` (wrapped by ``server_context``'s context) within ``timeout`` seconds.

    Raises ``HandshakeFailed`` saying why it failed. The socket is left blocking, as pynetdicom expects of
    an accepted one.
    """
    sock.settimeout(max(timeout, 0.001))
    try:
        # The plain socket's recv: SSLSocket.recv takes no flags. A peek leaves the bytes to OpenSSL.
        first = socket.socket.recv(sock, 1, socket.MSG_PEEK)
        if first and first[0] == ASSOCIATE_RQ_TYPE:
            raise HandshakeFailed("it sent plain DICOM (an A-ASSOCIATE-RQ) to a TLS-only port; "
                                  "configure TLS on the peer, or remove [local.tls]")
        if not first:
            raise HandshakeFailed("it closed the connection before the TLS handshake")
        sock.do_handshake()
    except ssl.SSLError as exc:
        raise HandshakeFailed(_reason(exc)) from None
    except TimeoutError:
        raise HandshakeFailed(f"no complete TLS handshake within {timeout:.3g} s") from None
    except OSError as exc:
        raise HandshakeFailed(f"the connection failed during the TLS handshake ({exc.strerror or exc})") from None
    sock.settimeout(None)


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason code in words, with what to check."""
    reason = exc.reason or ""
    if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return "it closed the connection during the TLS handshake"
    if reason in ("UNSUPPORTED_PROTOCOL", "WRONG_SSL_VERSION", "TLSV1_ALERT_PROTOCOL_VERSION"):
        return "it offered only TLS 1.1 or older; TLS 1.2 or newer is required (BCP 195)"
    if reason == "NO_SHARED_CIPHER":
        return ("it offered no BCP 195 cipher suite (TLS 1.2: ECDHE with AES-GCM or ChaCha20-Poly1305; "
                "or TLS 1.3)")
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "it sent no client certificate, and [local.tls] require_client_cert is true"
    if reason == "CERTIFICATE_VERIFY_FAILED":
        detail = getattr(exc, "verify_message", "") or "not verified"
        return f"its client certificate was refused ({detail}); [local.tls] ca must hold the CA that signed it"
    if reason.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_")):
        alert = reason.split("_ALERT_", 1)[1].lower().replace("_", " ")
        return (f"it ended the TLS handshake with the alert '{alert}'; it may not trust our certificate "
                "([local.tls] cert): give it our CA")
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG"):
        return f"it does not speak TLS ({reason.lower().replace('_', ' ')})"
    return f"the TLS handshake failed ({reason.lower().replace('_', ' ') if reason else exc})"
