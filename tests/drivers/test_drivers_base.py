"""The driver interface: registry, presets, optional dependencies, ``kiosk devices``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from drivers.device import DeviceInfo, Driver, Settings, scan_kind
from drivers.errors import DriverUnavailableError, NoDeviceError
from drivers.presets import BUILTIN_PRESETS, preset
from drivers.registry import get_driver, open_device, parse_uri
from kiosk.capture import SourceKind
from kiosk.config import load_config
from kiosk.errors import ConfigError, UsageError

from tests.support.paths import ROOT


def test_uris_are_split_at_the_first_colon():
    assert parse_uri("sane:test:0") == ("sane", "test:0")
    assert parse_uri("video:tcp://127.0.0.1:5611") == ("video", "tcp://127.0.0.1:5611")
    assert parse_uri("file:/tmp/a b.pdf") == ("file", "/tmp/a b.pdf")
    with pytest.raises(UsageError, match="not a source"):
        parse_uri("scanner0")
    with pytest.raises(UsageError, match="names no device"):
        parse_uri("demo:")


def test_registry_is_keyed_by_scheme():
    assert get_driver("demo").scheme == "demo" and get_driver("video").scheme == "video"
    with pytest.raises(NoDeviceError, match="demo device 'printer'"):
        open_device("demo:printer")
    with pytest.raises(NoDeviceError, match="no file"):
        open_device("file:/nonexistent/scan.pdf")


def test_presets_and_conversion_types():
    assert scan_kind(preset("document")) is SourceKind.SCANNED_DOCUMENT
    assert scan_kind(preset("Film")) is SourceKind.DIGITIZED_FILM
    assert scan_kind(preset("Photo")) is SourceKind.SCANNED_IMAGE
    assert scan_kind(Settings(mode="gray", depth=16)) is SourceKind.DIGITIZED_FILM
    with pytest.raises(UsageError, match="Document, Film, Photo"):
        preset("Xray")


def test_presets_are_configurable(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text('[presets.Document]\ndpi = 200\nmode = "color"\n\n[acquisition]\nmax_clip_seconds = 10\n')
    config = load_config(path)
    document = preset("Document", config.presets.tables())
    assert (document.dpi, document.mode, document.depth) == (200, "color", 8)
    assert preset("Film", config.presets.tables()) == BUILTIN_PRESETS["Film"]
    assert config.acquisition.max_clip_seconds == 10
    path.write_text('[presets.Film]\ndepth = 12\n')
    with pytest.raises(ConfigError, match="presets.Film: depth = 12; use 8 or 16"):
        load_config(path)


class _NeedsMissing(Driver):
    scheme, title, module, package, extra = "x", "teleporter support", "no_such_module_kiosk", "teleport", "tele"

    def discover(self) -> list[DeviceInfo]:
        return []

    def open(self, target, options=None):
        raise AssertionError("not reached")


def test_missing_optional_dependency_is_explained():
    driver = _NeedsMissing()
    assert driver.problem().startswith("teleporter support needs teleport: pip install kiosk[tele]")
    with pytest.raises(DriverUnavailableError, match=r"pip install kiosk\[tele\]"):
        driver.require()


def _kiosk(*args: str, hide: str = "", env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter; ``hide`` makes a module unimportable there."""
    code = (f"import sys; sys.modules[{hide!r}] = None; " if hide else "import sys; ") + \
        "from kiosk.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)


def test_kiosk_devices_lists_attached_devices(sane_test_backend):
    result = _kiosk("devices", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    uris = [d["uri"] for d in found["devices"]]
    assert uris[:2] == ["sane:test:0", "sane:test:1"] and "demo:scanner" in uris and "demo:camera" in uris
    assert found["unavailable"] == {}
    text = _kiosk("devices")
    assert "sane:test:1" in text.stdout and "scanner" in text.stdout


def test_kiosk_devices_says_which_drivers_are_missing(sane_test_backend):
    result = _kiosk("devices", hide="cv2")
    assert result.returncode == 0, result.stderr
    assert "unavailable: video: video capture support needs opencv-python-headless: " \
           "pip install kiosk[video]" in result.stdout
    failed = _kiosk("devices", "video:/dev/video0", hide="cv2")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "pip install kiosk[video]" in failed.stderr


def test_kiosk_devices_describes_one_device(sane_test_backend):
    result = _kiosk("devices", "sane:test:0", "--json")
    assert result.returncode == 0, result.stderr
    caps = json.loads(result.stdout)["capabilities"]
    assert caps["sources"] == ["flatbed", "adf"] and caps["depths"] == [8, 16]
    missing = _kiosk("devices", "sane:test:9")
    assert missing.returncode == 1 and "no scanner named 'test:9'" in missing.stderr


def test_drivers_never_import_dicom_or_ui_libraries():
    code = ("import sys, drivers.registry, drivers.presets, drivers.live, drivers.demo_devices, drivers.sane, "
            "drivers.video, drivers.file_driver, drivers.file_reader; "
            "d = drivers.registry.open_device('demo:scanner'); d.acquire(); d.close(); "
            "print(sorted(m for m in ('pydicom', 'pynetdicom', 'kivy', 'sane', 'cv2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr  # optional dependencies load only when used, too
