"""The kiosk's one TOML configuration file: finding, loading, validating, writing.

Lookup order: ``--config FILE``, then ``$KIOSK_CONFIG``, then ``kiosk.toml`` in
the platform's user config directory. A missing default file means built-in
defaults; a file named explicitly must exist. Validation collects every problem
(one line each, naming the key and the fix) and raises one ``ConfigError``.

Sections are frozen dataclasses whose ``setting`` fields are the TOML keys
(``SECTIONS``, ``NodeConfig``): a new feature declares each key once (default,
check, help text) and gets validation, defaults and ``kiosk config show`` for
free.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kiosk.errors import ConfigError, UsageError
from kiosk.modalities import LIVE_MODALITIES, SERIES_DESCRIPTIONS, check_series_descriptions
from kiosk.transfer_syntaxes import AUTO, choice_problem

APP_NAME = "kiosk"
CONFIG_FILENAME = "kiosk.toml"
ENV_VAR = "KIOSK_CONFIG"

Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Field:
    """One configuration key: its TOML type, default and extra check."""

    type: type | tuple[type, ...]
    default: Any
    check: Check | None = None
    doc: str = ""


def check_ae_title(value: str) -> str | None:
    """DICOM AE title rules (PS3.5 AE VR): 1-16 chars, no backslash or controls."""
    if not value.strip():
        return "is empty; set an AE title of 1 to 16 characters"
    if len(value) > 16:
        return f"is {len(value)} characters long; an AE title has at most 16"
    if "\\" in value:
        return "contains a backslash, which AE titles may not contain"
    if any(ord(c) < 32 or ord(c) > 126 for c in value):
        return "contains non-ASCII or control characters; use plain ASCII letters and digits"
    return None


def check_port(value: int) -> str | None:
    if not 1 <= value <= 65535:
        return f"is {value}; use a TCP port between 1 and 65535"
    return None


def check_host(value: str) -> str | None:
    if not value.strip() or any(c.isspace() for c in value):
        return "is not a host name or IP address; write e.g. \"pacs.example.org\" or \"10.0.0.5\""
    return None


_UID_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def check_uid_root(value: str) -> str | None:
    if value == "":
        return None
    if not _UID_ROOT.match(value):
        return "is not a UID root; use digits separated by dots, no leading zeros (e.g. \"1.2.826.0.1.3680043.10.543\")"
    if len(value) > 30:
        return f"is {len(value)} characters; keep it at most 30 so generated UIDs fit in 64"
    return None


def check_positive(value: float) -> str | None:
    # TOML allows inf and nan; neither is usable as seconds or a size.
    return None if math.isfinite(value) and value > 0 else f"is {value}; use a finite number greater than 0"


# PS3.8 D.1 allows any 32-bit maximum length; below DCMTK's minimum (4096) a
# peer cannot fit its PDVs and the association stalls until a timeout.
MIN_PDU, MAX_PDU = 4096, 2**32 - 1


def check_max_pdu(value: int) -> str | None:
    if value == 0 or MIN_PDU <= value <= MAX_PDU:
        return None
    return f"is {value}; use 0 (no limit) or a size from {MIN_PDU} to {MAX_PDU} bytes, e.g. 65536"


def check_non_negative(value: int) -> str | None:
    return None if value >= 0 else f"is {value}; use 0 or more"


def check_existing_file(value: str) -> str | None:
    path = Path(value).expanduser()
    if not path.is_file():
        return f"names {value!r}, which does not exist or is not a file; fix the path"
    if not os.access(path, os.R_OK):
        return f"names {value!r}, which cannot be read; check its permissions"
    return None


def check_pem_ca(value: str) -> str | None:
    """An existing, readable file that OpenSSL loads as PEM CA certificates."""
    return check_existing_file(value) or _pem_problem(value, "CA certificates")


def check_pem_cert(value: str) -> str | None:
    return check_existing_file(value) or _pem_problem(value, "a certificate")


def _pem_problem(value: str, what: str) -> str | None:
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(Path(value).expanduser()))
    except (ssl.SSLError, OSError, ValueError):
        return (f"names {value!r}, which does not hold {what} in PEM format (-----BEGIN CERTIFICATE-----); "
                "convert it, e.g. openssl x509 -inform der -in FILE -out FILE.pem")
    return None


def tls_pair_problem(cert: str, key: str) -> str | None:
    """Why OpenSSL cannot use ``cert`` with ``key`` (key '' = in the cert file) as a client certificate, or None."""
    import ssl

    try:
        # A key with a passphrase would make OpenSSL prompt on the terminal; the kiosk has none to give.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            str(Path(cert).expanduser()), str(Path(key).expanduser()) if key else None, password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"cannot be used with {cert!r} ({getattr(exc, 'reason', None) or exc})"
    return None


def check_pin(value: str) -> str | None:
    if value and not (value.isdigit() and 4 <= len(value) <= 12):
        return "must be 4 to 12 digits (or empty to lock settings out of the touch screen)"
    return None


def check_id_prefix(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9-]{0,16}", value):
        return "use at most 16 letters, digits or '-'"
    return None


def check_keyboard(value: str) -> str | None:
    return None if value in ("dock", "system") else f"is {value!r}; use \"dock\" (on-screen keyboard) or \"system\""


def check_modality_list(value: str) -> str | None:
    bad = [m for m in value.split(";") if m.strip() and not re.fullmatch(r"[A-Z0-9_]{1,16}", m.strip().upper())]
    return f"has {bad[0]!r}, which is not a modality code such as ES or XC" if bad else None


def check_secret_file(value: str) -> str | None:
    """A readable file (a password or token) that others cannot read."""
    if not value:
        return None
    if problem := check_existing_file(value):
        return problem
    if Path(value).expanduser().stat().st_mode & 0o077:
        return f"names {value!r}, which others can read; chmod 600 {value}"
    return None


def check_stow_url(value: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"is {value!r}; write the DICOMweb base URL, e.g. \"https://pacs.example.org/dicom-web\""
    if parts.username or parts.password:
        return "must not hold a user name or password; use username and password_file"
    return None


def check_sign_in(value: str) -> str | None:
    return None if value in ("off", "optional", "required") else f"is {value!r}; use \"off\", \"optional\" or \"required\""


def check_media_profile(value: str) -> str | None:
    from kiosk.media.profiles import PROFILES

    return None if value in PROFILES else f"is {value!r}; use one of {', '.join(PROFILES)}"


def check_choice(*choices: str) -> Callable[[str], str | None]:
    """A check that the value is one of ``choices``."""
    def check(value: str) -> str | None:
        return None if value in choices else f"is {value!r}; use one of {', '.join(choices)}"
    return check


def check_crf(value: int) -> str | None:
    return None if 0 <= value <= 51 else f"is {value}; use 0 (best) to 51 (smallest), e.g. 23"


def check_regex(value: str) -> str | None:
    """A regular expression (Python syntax); empty means none."""
    try:
        re.compile(value)
    except re.error as exc:
        return f"is not a valid regular expression ({exc})"
    return None


def check_id_pattern(value: str) -> str | None:
    """A regular expression with a named group ``patient_id`` and/or ``accession``; empty means none."""
    if problem := check_regex(value):
        return problem
    if value and not {"patient_id", "accession"} & set(re.compile(value).groupindex):
        return "has no named group (?P<patient_id>...) or (?P<accession>...)"
    return None


def check_audit_repository(value: str) -> str | None:
    if value and not re.fullmatch(r"(tls|udp)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", value):
        return f"is {value!r}; write tls://host:6514 (RFC 5425) or udp://host:514 (RFC 5426), or leave it empty"
    return None


def check_coerce_table(value: dict) -> str | None:
    from kiosk.coerce import check_rules  # lazy: it reads pydicom's data dictionary

    return check_rules(value)


def check_route(value: dict) -> str | None:
    from kiosk.routing import check_rule  # lazy: it reads pydicom's data dictionary

    return check_rule(value)


def check_route_name(name: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name) else "use a name of letters, digits, '-' or '_'"


def check_preset(value: dict) -> str | None:
    from drivers.presets import check_preset as check  # lazy: drivers pull in numpy

    return check(value)


def check_preset_name(name: str) -> str | None:
    from drivers.presets import check_preset_name as check  # lazy: drivers pull in numpy

    return check(name)


# Each section is a frozen dataclass whose fields are its TOML keys: a field made
# with ``setting`` declares the key's one default, its check and its help text;
# ``schema`` reads the TOML type from the annotation (float also takes whole numbers).
_SETTING = "kiosk.setting"
_OPEN = "kiosk.open"
_REQUIRED = object()


def setting(default: Any = _REQUIRED, check: Check | None = None, doc: str = "") -> Any:
    """A dataclass field that is a TOML key; without a default the key must be given."""
    metadata = {_SETTING: (check, doc)}
    if default is _REQUIRED:
        return field(metadata=metadata)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def open_tables(name_check: Callable[[str], str | None], check: Check, doc: str) -> Any:
    """A dataclass field holding the tables of a section under names of the user's choosing
    ([presets.NAME]): each name checked by ``name_check``, each table by ``check``."""
    return field(default_factory=dict, metadata={_OPEN: (name_check, Field(dict, {}, check, doc))})


def _toml_type(hint: Any) -> type | tuple[type, ...]:
    if hint is float:
        return (int, float)
    origin = typing.get_origin(hint) or hint
    return origin if origin in (dict, list) else hint


@functools.cache
def schema(cls: type) -> dict[str, Field]:
    """The TOML keys of a section dataclass, from its ``setting`` fields, in declaration order."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Field] = {}
    for spec in dataclasses.fields(cls):
        if _SETTING in spec.metadata:
            check, doc = spec.metadata[_SETTING]
            if spec.default is not dataclasses.MISSING:
                default = spec.default
            elif spec.default_factory is not dataclasses.MISSING:
                default = spec.default_factory()
            else:
                default = None  # required: reported as missing
            out[spec.name] = Field(_toml_type(hints[spec.name]), default, check, doc)
    return out


def _open_field(cls: type) -> tuple[str, tuple[Callable[[str], str | None], Field]] | None:
    """(field name, (name check, table field)) of a section taking tables of any name, or None."""
    return next(((f.name, f.metadata[_OPEN]) for f in dataclasses.fields(cls) if _OPEN in f.metadata), None)


def values_of(section: Any) -> dict[str, Any]:
    """A section's TOML keys and values (tables of one's own last), as ``kiosk config show`` writes them."""
    values = {key: getattr(section, key) for key in schema(type(section))}
    if opened := _open_field(type(section)):
        values.update(getattr(section, opened[0]))
    return values


@dataclass(frozen=True)
class LocalConfig:
    """[local]: this station, its listener and the names written into objects."""

    ae_title: str = setting("KIOSK", check_ae_title, "our calling AE title")
    port: int = setting(11112, check_port, "our listener (C-ECHO, storage commitment reports)")
    station_name: str = setting("KIOSK", None, "Station Name written into every object")
    institution_name: str = setting("", None, "Institution Name written into every object")
    institution_address: str = setting("", None, "Institution Address written into every object")
    department: str = setting("", None, "Institutional Department Name written into every object")
    uid_root: str = setting("", check_uid_root, "optional organisation root for generated UIDs")
    tls: ListenerTLSConfig | None = None


@dataclass(frozen=True)
class ListenerTLSConfig:
    """[local.tls]: with it the listener accepts DICOM over TLS only (TLS 1.2+, BCP 195 ciphers)."""

    cert: str = setting(check=check_pem_cert, doc="the listener's certificate (PEM)")
    key: str = setting("", check_existing_file, "its key (PEM, no passphrase); empty: in the cert file")
    ca: str = setting("", check_pem_ca, "CA bundle (PEM) that signed the peers' client certificates")
    require_client_cert: bool = setting(False, None, "refuse a peer without a client certificate the CA signed")


@dataclass(frozen=True)
class TLSConfig:
    """[destinations.NAME.tls]: paths for a TLS connection; ``ca`` verifies the server."""

    ca: str = setting("", check_pem_ca, "CA bundle (PEM) that signed the peer's certificate")
    cert: str = setting("", check_pem_cert, "our client certificate (PEM), if the peer asks for one")
    key: str = setting("", check_existing_file, "the key of our client certificate (PEM)")


@dataclass(frozen=True)
class CoerceConfig:
    """[destinations.NAME.coerce]: changes made to the copy sent to this destination (kiosk/coerce.py)."""

    set: dict[str, Any] = setting({}, None, "attributes added or overwritten, by keyword: { InstitutionName = \"...\" }")
    remove: list[str] = setting([], None, "attributes removed from the copy, by keyword")
    require: list[str] = setting([], None, "attributes that must have a value, or the object is not sent")
    character_set: str = setting("", None, "send text in this Specific Character Set, e.g. \"ISO_IR 100\"; "
                                 "values that do not fit are refused")
    name_format: str = setting("", None, "Person Names rewritten, e.g. \"{family}^{given}\" (family, given, "
                               "middle, prefix, suffix)")
    sop_class_fallback: dict[str, str] = setting({}, None, "SOP classes sent as another, by keyword or UID")


@dataclass(frozen=True)
class NodeConfig:
    """A remote DICOM node: a destination, the worklist, the query server or the MPPS SCP (the RIS).

    Each kind takes some of the keys (``DESTINATION_FIELDS``, ``QUERY_FIELDS``, ``WORKLIST_FIELDS``).
    """

    name: str
    ae_title: str = setting(check=check_ae_title, doc="the peer's (called) AE title")
    host: str = setting(check=check_host, doc="host name or IP address")
    port: int = setting(check=check_port, doc="the peer's DICOM port")
    connect_timeout: float = setting(10.0, check_positive, "seconds to open the TCP connection")
    acse_timeout: float = setting(30.0, check_positive, "seconds to wait for association replies")
    dimse_timeout: float = setting(60.0, check_positive, "seconds to wait for a DIMSE response")
    network_timeout: float = setting(60.0, check_positive, "seconds of silence before giving up")
    max_pdu: int = setting(0, check_max_pdu, "largest PDU we accept (4096 or more), 0 for no limit")
    storage_commitment: bool = setting(False, None, "ask for storage commitment after sending")
    transfer_syntax: str = setting(AUTO, choice_problem, "what we send: auto keeps each file's own")
    station_ae_title: str = setting("", lambda v: v and check_ae_title(v), "default Scheduled Station AE filter")
    max_results: int = setting(500, check_non_negative, "C-CANCEL a query after this many matches, 0 for no limit")
    calling_ae_title: str = setting("", lambda v: v and check_ae_title(v), "our AE title towards this node; empty: "
                                    "[local] ae_title")
    commitment_node: str = setting("", None, "ask this other destination for storage commitment of what was sent")
    stow_url: str = setting("", check_stow_url, "DICOMweb base URL (.../dicom-web): the destination takes STOW-RS")
    username: str = setting("", None, "HTTP basic authentication user (with password_file)")
    password_file: str = setting("", check_secret_file, "file holding the HTTP password (mode 0600)")
    token_file: str = setting("", check_secret_file, "file holding a bearer token (mode 0600)")
    max_request_mb: float = setting(50.0, check_positive, "largest STOW-RS request, MB; bigger batches are split")
    tls: TLSConfig | None = None
    coerce: CoerceConfig | None = None

    def __str__(self) -> str:
        address = self.stow_url or f"{self.ae_title}@{self.host}:{self.port}"
        return address if self.name == address else f"{self.name} ({address})"


def _keys(cls: type, *names: str) -> dict[str, Field]:
    return {name: schema(cls)[name] for name in names}


LOCAL_FIELDS = schema(LocalConfig)
LISTENER_TLS_FIELDS = schema(ListenerTLSConfig)
TLS_FIELDS = schema(TLSConfig)
NODE_FIELDS = _keys(NodeConfig, "ae_title", "host", "port", "connect_timeout", "acse_timeout", "dimse_timeout",
                    "network_timeout", "max_pdu")
COERCE_FIELDS = schema(CoerceConfig)
DESTINATION_FIELDS = NODE_FIELDS | _keys(NodeConfig, "storage_commitment", "transfer_syntax", "calling_ae_title",
                                         "commitment_node")
#: A STOW-RS destination: a URL instead of an AE title, host and port.
STOW_FIELDS = _keys(NodeConfig, "stow_url", "username", "password_file", "token_file", "max_request_mb",
                    "connect_timeout", "network_timeout", "storage_commitment", "transfer_syntax", "commitment_node")
QUERY_FIELDS = NODE_FIELDS | _keys(NodeConfig, "max_results")
WORKLIST_FIELDS = NODE_FIELDS | _keys(NodeConfig, "max_results", "station_ae_title")
MPPS_FIELDS = NODE_FIELDS


@dataclass(frozen=True)
class OutboxConfig:
    """[outbox]: the spool and how delivery retries (docs/outbox.md)."""

    spool_dir: str = setting("", None, "where accepted images wait; empty: <user data dir>/outbox")
    retry_count: int = setting(10, check_non_negative, "automatic retries of a transient failure, 0 for none "
                                                        "(a job fails after retry_count + 1 attempts)")
    retry_interval: float = setting(30.0, check_positive, "seconds before the first retry; doubles each time")
    retry_max_interval: float = setting(3600.0, check_positive, "longest wait between two retries, seconds")
    batch_size: int = setting(100, check_positive, "jobs taken (marked sending) at a time; batches that follow "
                                                   "one another share an association")
    retention_hours: float = setting(168.0, check_non_negative, "keep sent files this long; unsent files are "
                                                                "never deleted")
    min_free_mb: int = setting(500, check_non_negative, "refuse new images when the spool disk has less free "
                                                        "space (MB)")
    commitment_timeout: float = setting(60.0, check_positive, "seconds to wait for a storage commitment report")


@dataclass(frozen=True)
class UIConfig:
    """[ui]: the touch UI (docs/ui.md)."""

    admin_pin: str = setting("", check_pin, "PIN for Settings and removing outbox jobs; empty: locked")
    idle_timeout: int = setting(300, check_non_negative, "seconds without a touch before the session ends, 0 never")
    kiosk_mode: bool = setting(False, None, "fullscreen borderless window for a dedicated touch screen")
    keyboard: str = setting("dock", check_keyboard, "dock: on-screen keyboard plus physical keys; system: "
                                                    "physical only")
    worklist_refresh: int = setting(60, check_non_negative, "seconds between worklist refreshes, 0 for manual only")
    sessions_dir: str = setting("", None, "where captures wait until sent; empty: <user data dir>/sessions")
    series_presets: str = setting("Scanned documents;Consent form;Referral letter;Outside films;Photos", None,
                                  "series description choices, separated by ';'")
    generate_patient_id: bool = setting(False, None, "the new-patient form proposes an ID (prefix + date + random)")
    patient_id_prefix: str = setting("K", check_id_prefix, "prefix of generated patient IDs (letters, digits, '-')")
    sign_in: str = setting("off", check_sign_in, "operator sign-in: off, optional or required (kiosk operator add)")


@dataclass(frozen=True)
class PresetsConfig:
    """[presets]: ``Document``, ``Film``, ``Photo`` override the built-in scan presets
    (drivers/presets.py BUILTIN_PRESETS); any other name is a preset of one's own (docs/drivers.md)."""

    Document: dict[str, Any] = setting({}, check_preset, "the Document preset: mode, depth, dpi, source, film, clean-up")
    Film: dict[str, Any] = setting({}, check_preset, "the Film preset: mode, depth, dpi, source, film, clean-up")
    Photo: dict[str, Any] = setting({}, check_preset, "the Photo preset: mode, depth, dpi, source, film, clean-up")
    own: dict[str, dict[str, Any]] = open_tables(check_preset_name, check_preset,
                                                 "a preset of your own: mode, depth, dpi, source, film, clean-up")

    def tables(self) -> dict[str, dict[str, Any]]:
        """Every preset table by name, built-in ones first (what ``drivers.presets.presets`` takes)."""
        return values_of(self)


@dataclass(frozen=True)
class AcquisitionConfig:
    """[acquisition]: live sources (cameras, video)."""

    max_clip_seconds: float = setting(1800.0, check_positive, "longest video clip recorded, seconds (recorded to "
                                                              "disk: memory does not grow with the length)")
    stall_timeout: float = setting(1.5, check_positive, "seconds without a frame before a video source counts as "
                                                        "stalled")
    live_modalities: str = setting(LIVE_MODALITIES, check_modality_list, "orders of these modalities (';'-separated) "
                                   "offer the camera or capture card first, all others the scanner")
    series_descriptions: dict[str, str] = setting(SERIES_DESCRIPTIONS, check_series_descriptions,
                                                  "series description by source kind: scanned_document, "
                                                  "digitized_film, scanned_image, video_frame, file_import")


@dataclass(frozen=True)
class VideoConfig:
    """[video]: clips recorded from live sources and video files imported (docs/drivers.md, docs/objects.md)."""

    codec: str = setting("h264", check_choice("h264", "hevc"), "what recordings are encoded as: h264 (H.264 High, "
                         "every PACS that takes video) or hevc (HEVC Main, half the size, fewer viewers)")
    crf: int = setting(23, check_crf, "recording quality: 0 best ... 51 smallest; 18-28 is usual, lower is larger")
    preset: str = setting("superfast", check_choice("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
                          "encoder speed against size: ultrafast ... medium (slower presets may not keep up)")
    reserve_mb: int = setting(2000, check_non_negative, "free disk space (MB) a recording keeps: below it "
                              "recording is refused, or stopped cleanly")
    max_object_mb: int = setting(2000, check_positive, "largest video object (MB); longer clips are split into "
                                 "consecutive objects of the same series")
    iod: str = setting("auto", check_choice("auto", "endoscopic", "photographic", "secondary-capture"),
                       "the objects for clips and stills: auto (by the modality: ES endoscopic, XC "
                       "photographic, GM microscopic, else Secondary Capture) or one for every modality")
    fallback: bool = setting(True, None, "a destination that refuses the video object gets the clip as "
                             "Multi-frame True Color SC (frames re-encoded once as JPEG)")


@dataclass(frozen=True)
class AuditConfig:
    """[audit]: the DICOM audit trail (IHE ATNA) and the Audit Record Repository it goes to (kiosk/audit/)."""

    repository: str = setting("", check_audit_repository, "tls://host:6514 or udp://host:514; empty: kept "
                              "locally only")
    ca: str = setting("", lambda v: v and check_pem_ca(v), "CA bundle (PEM) that signed the repository's certificate; "
                      "empty: the system's CAs")
    cert: str = setting("", lambda v: v and check_pem_cert(v), "our client certificate (PEM), if the repository "
                        "asks for one")
    key: str = setting("", lambda v: v and check_existing_file(v), "the key of our client certificate (PEM)")
    keep_days: float = setting(90.0, check_positive, "days the local copy of each audit message is kept")


@dataclass(frozen=True)
class MediaConfig:
    """[media]: patients' CDs and USB sticks read and imported, PDI media written (docs/media.md)."""

    profile: str = setting("STD-GEN-CD", check_media_profile, "the media profile exports follow: STD-GEN-CD, "
                           "STD-GEN-DVD-RAM, STD-GEN-USB (uncompressed), STD-GEN-USB-JPEG, STD-GEN-USB-J2K")
    web_content: bool = setting(True, None, "write the IHE_PDI folder (INDEX.HTM and JPEG previews) on exports")
    mount_points: list[str] = setting(["/media", "/run/media", "/mnt"], None,
                                      "folders watched for inserted CDs and USB sticks holding DICOM")
    remap_uids: bool = setting(False, None, "imported studies and series get new UIDs (consistently); false keeps "
                               "the medium's")
    skip_existing: bool = setting(True, None, "ask the [query] node which instances the archive already holds and "
                                  "skip them on import")
    burner: str = setting("", None, "optical drive exports are burnt on with xorriso, e.g. /dev/sr0; empty: none")


@dataclass(frozen=True)
class InboxConfig:
    """[inbox]: documents that arrive by themselves: print jobs (the CUPS queue ``kiosk``) and a watched
    folder; filed to a patient by rules, or held in the touch UI's Inbox for a person (docs/drivers.md)."""

    folder: str = setting("", None, "a folder (local or a network share) watched for PDFs, images and DICOM "
                          "files; empty: none")
    print_folder: str = setting("", None, "where the CUPS backend leaves print jobs; empty: <user data dir>/print")
    name_pattern: str = setting("", check_id_pattern, "regex over the file name (a print job: its title) with "
                                "named groups patient_id and/or accession")
    text_pattern: str = setting("", check_id_pattern, "regex over a PDF's text with named groups patient_id "
                                "and/or accession")
    send_to: list[str] = setting([], None, "destinations of documents filed by the rules; empty: the [routing] "
                                 "rules")
    done_days: float = setting(0.0, check_non_negative, "days files stay in the folder's done/ before they are "
                               "deleted, 0 to keep them")
    settle_seconds: float = setting(3.0, check_positive, "a file must stay unchanged this long before it is "
                                    "taken (a copy still in progress is not)")
    as_pages: bool = setting(False, None, "send documents as Secondary Capture pages, not Encapsulated PDF")


@dataclass(frozen=True)
class BarcodesConfig:
    """[barcodes]: what the barcodes on scanned pages mean (docs/drivers.md)."""

    patient_id: str = setting("", check_regex, "regex a barcode's text must match to name a patient (group 1 or "
                              "(?P<patient_id>...) is the ID); a page naming another patient blocks sending")
    accession: str = setting("", check_regex, "regex for an accession number barcode (group 1 or "
                             "(?P<accession>...)); another order's blocks sending")
    separator: str = setting("", check_regex, "regex of a separator sheet's barcode: it starts a new document "
                             "(series) and is not stored")
    camera: str = setting("", None, "the camera the patient screen reads wristbands with (a source URI, e.g. "
                          "video:/dev/video0); empty: the first camera found")


@dataclass(frozen=True)
class RoutingConfig:
    """[routing]: which destinations a session's objects go to (kiosk/routing.py)."""

    default: list[str] = setting([], None, "destinations when no rule matches; empty: every destination")
    rules: dict[str, dict[str, Any]] = open_tables(check_route_name, check_route,
                                                   "a rule: send_to, and any of modality, source, sop_class")


@dataclass(frozen=True)
class NetworkConfig:
    """[network]: how the kiosk talks DICOM (docs/networking.md)."""

    fast_path: bool = setting(True, None, "use the kiosk's tuned pynetdicom internals; false: stock pynetdicom only")


#: The sections beyond networking, each a field of ``Config`` of the same name.
SECTIONS: dict[str, type] = {"outbox": OutboxConfig, "ui": UIConfig, "presets": PresetsConfig,
                             "acquisition": AcquisitionConfig, "video": VideoConfig, "network": NetworkConfig, "routing": RoutingConfig,
                             "audit": AuditConfig, "media": MediaConfig, "inbox": InboxConfig,
                             "barcodes": BarcodesConfig}


@dataclass(frozen=True)
class Config:
    """The effective configuration."""

    local: LocalConfig = field(default_factory=LocalConfig)
    destinations: dict[str, NodeConfig] = field(default_factory=dict)
    worklist: NodeConfig | None = None
    query: NodeConfig | None = None
    path: Path | None = None
    mpps: NodeConfig | None = None
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    presets: PresetsConfig = field(default_factory=PresetsConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    barcodes: BarcodesConfig = field(default_factory=BarcodesConfig)


def default_config_path() -> Path:
    """Where the kiosk looks when neither ``--config`` nor ``$KIOSK_CONFIG`` is set."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILENAME


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """Return (path, explicit?) following the lookup order."""
    if explicit:
        return Path(explicit).expanduser(), True
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), True
    return default_config_path(), False


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Find, read and validate the configuration; raise ``ConfigError`` on any problem."""
    path, named = find_config_path(explicit)
    if not path.exists():
        if named:
            raise ConfigError(
                ["configuration file not found; create it (see docs/configuration.md) or fix the path"],
                str(path),
            )
        return Config(path=None)
    return parse_config(_read_toml(path), path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a configuration file; name the .toml file"], str(path)) from None
    except OSError as exc:
        raise ConfigError([f"cannot be read ({exc.strerror}); check that it exists and its permissions"], str(path)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(["is not UTF-8 text; save it as UTF-8"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"is not valid TOML: {exc}; fix the syntax there"], str(path)) from None


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {str: "a string (in quotes)", int: "a whole number", float: "a number", bool: "true or false", dict: "a table",
             list: "a list, e.g. [\"A\", \"B\"]"}
    if isinstance(t, tuple):
        return names[float] if float in t else " or ".join(names[x] for x in t)
    return names[t]


def _is_type(value: Any, t: type | tuple[type, ...]) -> bool:
    types = t if isinstance(t, tuple) else (t,)
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _unknown(key: str, where: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return f"{where}{key}: unknown key; {hint}"


def _section(data: Any, fields: dict[str, Field], where: str, problems: list[str],
             other: tuple[Callable[[str], str | None], Field] | None = None) -> dict[str, Any]:
    """Validate one table against its fields; return values with defaults filled in.

    ``other`` (name check, field) accepts further keys, as a section with ``open_tables`` does.
    """
    if not isinstance(data, dict):
        problems.append(f"{where.rstrip('.')}: must be a table ([{where.rstrip('.')}])")
        return {k: f.default for k, f in fields.items()}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            if other is None:
                problems.append(_unknown(key, where, list(fields)))
            elif problem := other[0](key):
                problems.append(f"{where}{key}: {problem}")
    further = [(key, other[1]) for key in data if key not in fields] if other else []
    for key, spec in [*fields.items(), *further]:
        if key not in data:
            if spec.default is None:
                problems.append(f"{where}{key}: missing; add {key} = ... ({spec.doc})")
            out[key] = spec.default
            continue
        value = data[key]
        if not _is_type(value, spec.type):
            problems.append(f"{where}{key}: is {value!r}, must be {_type_name(spec.type)}")
            out[key] = spec.default
            continue
        message = spec.check(value) if spec.check else None
        if message:
            problems.append(f"{where}{key}: {message}")
        out[key] = float(value) if spec.type == (int, float) else value
    return out


def _typed(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """One section validated into its dataclass (defaults for what is missing or wrong)."""
    keys, opened = schema(cls), _open_field(cls)
    values = _section(data, keys, where, problems, opened[1] if opened else None)
    fixed = {k: v for k, v in values.items() if k in keys}
    if opened:
        fixed[opened[0]] = {k: v for k, v in values.items() if k not in keys}
    return cls(**fixed)


def _node(name: str, data: Any, fields: dict[str, Field], where: str, problems: list[str]) -> NodeConfig | None:
    if not isinstance(data, dict):
        problems.append(f"{where.rstrip('.')}: must be a table with ae_title, host and port")
        return None
    data = dict(data)
    tls_data = data.pop("tls", None)
    coerce_data = data.pop("coerce", None) if fields is DESTINATION_FIELDS else None
    stow = fields is DESTINATION_FIELDS and "stow_url" in data
    values = _section(data, STOW_FIELDS if stow else fields, where, problems)
    tls = None
    if tls_data is not None:
        before = len(problems)
        tls = _typed(TLSConfig, tls_data, f"{where}tls.", problems)
        if tls.cert and len(problems) == before and (problem := tls_pair_problem(tls.cert, tls.key)):
            key = "key" if tls.key else "cert"
            problems.append(f"{where}tls.{key}: {problem}; give an unencrypted PEM key that belongs to the certificate")
    coerce = None
    if coerce_data is not None:
        before = len(problems)
        coerce = _typed(CoerceConfig, coerce_data, f"{where}coerce.", problems)
        if len(problems) == before and (problem := check_coerce_table(values_of(coerce))):
            problems.append(f"{where}coerce.{problem}")
    if stow:
        return _stow_node(name, values, tls, coerce, where, problems)
    if any(values[k] is None for k in ("ae_title", "host", "port")):
        return None
    return NodeConfig(name=name, tls=tls, coerce=coerce, **values)


def _stow_node(name: str, values: dict[str, Any], tls: TLSConfig | None, coerce: CoerceConfig | None, where: str,
               problems: list[str]) -> NodeConfig | None:
    """A STOW-RS destination: its host and port come from the URL (for messages and the audit trail)."""
    from urllib.parse import urlsplit

    if values["password_file"] and values["token_file"]:
        problems.append(f"{where}token_file: give either username + password_file or token_file, not both")
    if bool(values["username"]) != bool(values["password_file"]):
        key = "password_file" if values["username"] else "username"
        problems.append(f"{where}{key}: missing; HTTP basic authentication needs both username and password_file")
    if not values["stow_url"] or check_stow_url(values["stow_url"]):
        return None
    parts = urlsplit(values["stow_url"])
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return NodeConfig(name=name, ae_title="", host=parts.hostname or "", port=port, tls=tls, coerce=coerce, **values)


def _local(data: Any, problems: list[str]) -> LocalConfig:
    """[local], with its optional [local.tls] table."""
    data = dict(data) if isinstance(data, dict) else data
    tls_data = data.pop("tls", None) if isinstance(data, dict) else None
    local = _typed(LocalConfig, data, "local.", problems)
    if tls_data is None:
        return local
    before = len(problems)
    tls = _typed(ListenerTLSConfig, tls_data, "local.tls.", problems)
    if len(problems) == before and (problem := tls_pair_problem(tls.cert, tls.key)):
        problems.append(f"local.tls.{'key' if tls.key else 'cert'}: {problem}; give an unencrypted PEM key that "
                        "belongs to the certificate")
    if tls.require_client_cert and not tls.ca:
        problems.append("local.tls.ca: missing; require_client_cert needs the CA that signs the peers' certificates")
    return dataclasses.replace(local, tls=tls)


def _cross_check(destinations: dict[str, NodeConfig], routing: RoutingConfig, problems: list[str]) -> None:
    """What one destination or rule says about another: names that must exist and be of the right kind."""
    for name, node in destinations.items():
        where = f"destinations.{name}."
        other = destinations.get(node.commitment_node)
        if node.commitment_node and (other is None or other.stow_url or other is node):
            problems.append(f"{where}commitment_node: is {node.commitment_node!r}; name another DICOM destination "
                            f"(configured: {', '.join(n for n, d in destinations.items() if not d.stow_url and n != name) or 'none'})")
        if node.stow_url and node.storage_commitment and not node.commitment_node:
            problems.append(f"{where}storage_commitment: STOW-RS has no storage commitment; set commitment_node to the "
                            "DICOM node of the same archive, or remove storage_commitment")
    known = ", ".join(destinations) or "none configured"
    for key, names in [("routing.default", routing.default),
                       *((f"routing.{rule}.send_to", table.get("send_to", [])) for rule, table in routing.rules.items())]:
        for missing in [n for n in names if n not in destinations]:
            problems.append(f"{key}: names {missing!r}, which is not a destination (configured: {known})")


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate parsed TOML into a ``Config``; raise ``ConfigError`` listing every problem."""
    problems: list[str] = []
    known = ["local", "destinations", "worklist", "query", "mpps", *SECTIONS]
    for key in data:
        if key not in known:
            problems.append(_unknown(key, "", known).replace("unknown key", "unknown section"))
    local = _local(data.get("local", {}), problems)
    destinations: dict[str, NodeConfig] = {}
    dest_data = data.get("destinations", {})
    if not isinstance(dest_data, dict):
        problems.append("destinations: must be tables, written [destinations.NAME]")
        dest_data = {}
    for name, node_data in dest_data.items():
        node = _node(name, node_data, DESTINATION_FIELDS, f"destinations.{name}.", problems)
        if node:
            destinations[name] = node
    worklist = query = None
    if "worklist" in data:
        worklist = _node("worklist", data["worklist"], WORKLIST_FIELDS, "worklist.", problems)
    if "query" in data:
        query = _node("query", data["query"], QUERY_FIELDS, "query.", problems)
    mpps = _node("mpps", data["mpps"], MPPS_FIELDS, "mpps.", problems) if "mpps" in data else None
    sections = {name: _typed(cls, data.get(name, {}), f"{name}.", problems) for name, cls in SECTIONS.items()}
    _cross_check(destinations, sections["routing"], problems)
    if problems:
        raise ConfigError(problems, str(path) if path else "")
    return Config(local, destinations, worklist, query, path, mpps, **sections)


_NODE_URL = re.compile(r"^(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:@\[\]]+):(?P<port>\d+)$")


def parse_node_url(text: str) -> NodeConfig:
    """Parse the dcm4che form ``AET@host:port`` (IPv6 hosts in brackets)."""
    match = _NODE_URL.match(text.strip())
    if not match:
        raise UsageError(
            f"{text!r} is neither a configured node nor AET@host:port",
            "write e.g. PACS@10.0.0.5:104, or run 'kiosk config show' to see configured names",
        )
    aet, host, port = match["aet"], match["host"].strip("[]"), int(match["port"])
    for key, message in (("AE title", check_ae_title(aet)), ("port", check_port(port)), ("host", check_host(host))):
        if message:
            raise UsageError(f"{text!r}: the {key} {message}")
    return NodeConfig(name=f"{aet}@{host}:{port}", ae_title=aet, host=host, port=port)


def resolve_node(config: Config, text: str, role: str = "destination") -> NodeConfig:
    """A configured node by name (destinations, or ``worklist``/``query``/``mpps``) or ``AET@host:port``."""
    if "@" in text:
        return parse_node_url(text)
    named = dict(config.destinations)
    for special in (config.worklist, config.query, config.mpps):
        if special is not None:
            named.setdefault(special.name, special)
    if text in named:
        return named[text]
    known = ", ".join(sorted(named)) or "none configured"
    raise UsageError(
        f"unknown {role} {text!r} (configured: {known})",
        "use a name from the config file or AET@host:port",
    )


def _toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted key (a preset named "ID card")."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):  # e.g. [presets] Document = { dpi = 200 }
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _toml_table(header: str, values: dict[str, Any], lines: list[str]) -> None:
    lines.append(f"[{header}]")
    lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items() if v is not None)
    lines.append("")


def _node_values(node: NodeConfig, fields: dict[str, Field]) -> dict[str, Any]:
    return {k: getattr(node, k) for k in fields}


def to_toml(config: Config) -> str:
    """Render a configuration as TOML that ``load_config`` reads back unchanged."""
    lines: list[str] = []
    _toml_table("local", values_of(config.local), lines)
    if config.local.tls:
        _toml_table("local.tls", {k: v for k, v in values_of(config.local.tls).items() if v != ""}, lines)
    nodes = [(f"destinations.{_toml_key(n.name)}", n, STOW_FIELDS if n.stow_url else DESTINATION_FIELDS)
             for n in config.destinations.values()]
    if config.worklist:
        nodes.append(("worklist", config.worklist, WORKLIST_FIELDS))
    if config.query:
        nodes.append(("query", config.query, QUERY_FIELDS))
    if config.mpps:
        nodes.append(("mpps", config.mpps, MPPS_FIELDS))
    for header, node, fields in nodes:
        _toml_table(header, _node_values(node, fields), lines)
        if node.tls:
            # Unset paths are left out: an empty one would be read back as a file that does not exist.
            _toml_table(f"{header}.tls", {k: v for k, v in values_of(node.tls).items() if v}, lines)
        if node.coerce:
            _toml_table(f"{header}.coerce", values_of(node.coerce), lines)
    for name in SECTIONS:
        _toml_table(name, values_of(getattr(config, name)), lines)
    return "\n".join(lines)
