"""Real DICOM peers for tests: DCMTK storescp and wlmscpfs, Orthanc, dciodvfy.

Each peer runs as a child process on 127.0.0.1 with a free port and is stopped
by its PID. The whole test session runs in a private network namespace (see
conftest.py), so servers that cannot bind to loopback only are still reachable
from nowhere else.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# Where Debian installs the peers (Orthanc in sbin), looked in after PATH. An activated venv puts
# pynetdicom's own storescp, storescu, findscu, echoscu... first on PATH (same names, other
# options), so a DCMTK tool is taken only where ``--version`` says it is DCMTK's.
INSTALL_DIRS = ("/usr/bin", "/usr/sbin")
DCMTK_TOOLS = frozenset({"dcmcjpeg", "dcmcjpls", "dcmdump", "echoscu", "findscu", "getscu", "img2dcm", "movescu",
                         "storescp", "storescu", "wlmscpfs"})


@functools.cache
def _is_dcmtk(path: str) -> bool:
    """DCMTK tools print ``$dcmtk: NAME vX.Y.Z ...$`` for ``--version``; pynetdicom's do not."""
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "$dcmtk:" in result.stdout + result.stderr


def _find_binary(name: str, search_path: str) -> tuple[str | None, str | None]:
    """(path of the tool, None), or (None, why none will do)."""
    candidates = [shutil.which(name, path=search_path), *(os.path.join(folder, name) for folder in INSTALL_DIRS)]
    found = [path for path in dict.fromkeys(candidates) if path and os.path.isfile(path) and os.access(path, os.X_OK)]
    if name not in DCMTK_TOOLS:
        return (found[0], None) if found else (None, f"{name} is not installed")
    for path in found:
        if _is_dcmtk(path):
            return path, None
    if found:
        return None, f"{name} at {', '.join(found)} is not DCMTK's (pynetdicom installs one of its own); install DCMTK"
    return None, f"{name} (DCMTK) is not installed"


def require_binary(name: str) -> str:
    """Path of a peer binary (DCMTK's own for DCMTK tool names); a missing one fails under CI and skips elsewhere."""
    path, problem = _find_binary(name, os.environ.get("PATH", os.defpath))
    if path:
        return path
    message = f"{problem} (run packaging/install-deps.sh)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with code {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"peer did not listen on port {port} within {timeout} s")


@dataclass
class Peer:
    """A running peer process; ``stop()`` ends it by PID."""

    name: str
    aet: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The dcm4che-style node address ``AET@host:port``."""
        return f"{self.aet}@{HOST}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(name: str, aet: str, port: int, argv: list[str], workdir: Path, env: dict | None = None, **extra: Any) -> Peer:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                env={**os.environ, **(env or {})})
    peer = Peer(name, aet, port, proc, workdir, log, extra)
    try:
        wait_for_port(port, proc)
    except RuntimeError as exc:
        peer.stop()
        raise RuntimeError(f"{name}: {exc}\n{peer.output()}") from None
    return peer


def start_storescp(workdir: Path, aet: str = "STORESCP", options: Iterable[str] = (), port: int | None = None,
                   nodelay: bool = True) -> Peer:
    """DCMTK storescp writing received files to ``workdir/received`` (on ``port``, or a free one).

    ``nodelay``: DCMTK's ``TCP_NODELAY=1`` switch, so the peer answers at once
    (tests run faster); our own sockets set TCP_NODELAY either way.
    """
    binary = require_binary("storescp")
    port = port or free_port()
    received = workdir / "received"
    received.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-aet", aet, "-od", str(received), *options, str(port)]
    env = {"TCP_NODELAY": "1"} if nodelay else {}
    return start("storescp", aet, port, argv, workdir, env=env, received=received)


def start_wlmscpfs(workdir: Path, items: Iterable[Any], aet: str = "WLM") -> Peer:
    """DCMTK wlmscpfs serving ``items`` (pydicom Datasets) under AE title ``aet``."""
    binary = require_binary("wlmscpfs")
    port = free_port()
    db = workdir / "worklists"
    write_worklist_files(db / aet, items)
    (db / aet / "lockfile").touch()
    argv = [binary, "-csk", "-dfp", str(db), str(port)]
    return start("wlmscpfs", aet, port, argv, workdir)


def write_worklist_files(folder: Path, items: Iterable[Any]) -> list[Path]:
    """Write worklist items as .wl files (Part 10, as DCMTK and Orthanc read them)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, item in enumerate(items):
        item = item.copy()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        item.file_meta = meta
        path = folder / f"item{index:03d}.wl"
        item.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


class Orthanc(Peer):
    """Orthanc with REST access for checking what arrived (with the first registered user's credentials)."""

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb base URL (the plugin's root), for ``stow_url``."""
        return f"http://{HOST}:{self.extra['http_port']}/dicom-web"

    def rest(self, path: str, method: str = "GET", body: bytes | None = None) -> Any:
        data = self.rest_bytes(path, method, body)
        return json.loads(data) if data else None

    def rest_bytes(self, path: str, method: str = "GET", body: bytes | None = None) -> bytes:
        """The REST API's answer as it came (e.g. ``/instances/ID/file``, the stored file)."""
        request = urllib.request.Request(f"http://{HOST}:{self.extra['http_port']}{path}", data=body, method=method)
        if users := self.extra.get("users"):
            user, password = next(iter(users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def instances(self) -> list[str]:
        return self.rest("/instances")

    def tags(self, instance_id: str) -> dict:
        return self.rest(f"/instances/{instance_id}/simplified-tags")

    def clear(self) -> None:
        for patient in self.rest("/patients"):
            self.rest(f"/patients/{patient}", method="DELETE")


ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")


def _orthanc_plugin(name: str, what: str) -> Path:
    plugin = ORTHANC_PLUGINS / name
    if not plugin.exists():
        message = f"Orthanc's {what} plugin is missing ({plugin}; run packaging/install-deps.sh)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return plugin


def start_orthanc(workdir: Path, worklist_items: Iterable[Any] = (), kiosk_aet: str = "KIOSK",
                  kiosk_port: int | None = None, aet: str = "ORTHANC", users: dict[str, str] | None = None,
                  storage: Path | None = None, settings: dict[str, Any] | None = None) -> Orthanc:
    """Orthanc with its own storage, the worklist plugin and a DicomModalities entry for the kiosk.

    ``users``: also the DICOMweb plugin (``Orthanc.dicomweb_url``), and HTTP basic authentication
    on for these user names and passwords (REST and DICOMweb alike). ``storage``: where it keeps
    files and index (e.g. a tmpfs), instead of under ``workdir``. ``settings``: more configuration
    keys, e.g. ``{"AcceptedTransferSyntaxes": [...]}``.
    """
    binary = require_binary("Orthanc")
    plugins = [_orthanc_plugin("libModalityWorklists.so", "worklist")]
    if users:
        plugins.append(_orthanc_plugin("libOrthancDicomWeb.so", "DICOMweb"))
    port, http_port = free_port(), free_port()
    worklists = workdir / "worklists"
    write_worklist_files(worklists, worklist_items)
    config = {
        "Name": "kiosk-test",
        "DefaultEncoding": "Utf8",
        "StorageDirectory": str((storage or workdir) / "storage"),
        "IndexDirectory": str((storage or workdir) / "index"),
        "DicomAet": aet,
        "DicomPort": port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": dict(users or {}),
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowFindWorklist": True,
        "DicomScuTimeout": 5,
        "StableAge": 1,
        "Plugins": [str(plugin) for plugin in plugins],
        "Worklists": {"Enable": True, "Database": str(worklists)},
        "DicomWeb": {"Enable": bool(users), "Root": "/dicom-web/"},
        "DicomModalities": {
            "kiosk": {"AET": kiosk_aet, "Host": HOST, "Port": kiosk_port or free_port(),
                      "AllowStorageCommitment": True, "AllowEcho": True, "AllowStore": True,
                      "AllowFind": True},
        },
    }
    config.update(settings or {})
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    argv = [binary, str(config_path)]
    peer = start("orthanc", aet, port, argv, workdir, http_port=http_port, worklists=worklists,
                 kiosk_port=config["DicomModalities"]["kiosk"]["Port"], users=dict(users or {}))
    peer.__class__ = Orthanc
    wait_for_port(http_port, peer.proc)
    return peer  # type: ignore[return-value]


def dciodvfy(path: str | os.PathLike[str]) -> str:
    """Run dciodvfy on a file; fail the test on any error line. Returns its output."""
    binary = require_binary("dciodvfy")
    result = subprocess.run([binary, str(path)], capture_output=True, text=True, errors="replace", timeout=60)
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    if errors:
        pytest.fail(f"dciodvfy found {len(errors)} error(s) in {path}:\n" + "\n".join(errors) + "\n--- full output ---\n" + output)
    return output
