"""Scan area (``--area``, set on SANE's test backend and read back) and presets of one's own ([presets.NAME])."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from drivers.device import Settings
from drivers.presets import PAPER_SIZES_MM, check_preset_name, parse_area, preset, presets
from kiosk.config import ConfigError, parse_config
from kiosk.errors import UsageError

from tests.support.paths import ROOT
PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "P-6"]


def kiosk(*args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in a fresh process (SANE's test backend keeps option state per process)."""
    prefix = ["--config", str(config)] if config else []
    result = subprocess.run([sys.executable, "-m", "kiosk", *prefix, *args], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ), timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def only_dataset(folder: Path) -> pydicom.Dataset:
    [path] = folder.glob("*.dcm")
    return pydicom.dcmread(path)


# -- the area ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,area", [
    ("A4", (0, 0, 210, 297)), ("letter", (0, 0, 215.9, 279.4)), ("10,20,100,50", (10, 20, 110, 70)),
    (" a5 ", (0, 0, 148, 210)),
])
def test_parse_area(text, area):
    assert parse_area(text) == pytest.approx(area)


@pytest.mark.parametrize("text", ["A9", "1,2,3", "x,1,2,3", "0,0,0,5", "-1,0,10,10", "nan,0,1,1", "0,0,inf,1", ""])
def test_bad_areas_are_usage_errors(text):
    with pytest.raises(UsageError) as caught:
        parse_area(text)
    assert repr(text) in caught.value.message


def test_area_is_set_and_read_back_on_sane(sane_device):
    scanner = sane_device()
    effective = scanner.configure(Settings(mode="gray", depth=8, dpi=50, area_mm=parse_area("10,20,100,50")))
    assert effective.area_mm == pytest.approx((10, 20, 110, 70))
    assert scanner.acquire().pixels.shape == (98, 196)  # 50 x 100 mm at 50 dpi
    # Beyond the bed (300 mm here): the backend clamps silently; we report what it uses.
    clamped = scanner.configure(Settings(dpi=50, area_mm=(0, 0, 400, 400)))
    assert clamped.area_mm == pytest.approx((0, 0, 300, 300))
    # Moving the top-left corner past the old bottom-right one still works.
    moved = scanner.configure(Settings(dpi=50, area_mm=(250, 250, 290, 295)))
    assert moved.area_mm == pytest.approx((250, 250, 290, 295))


def test_cli_area_paper_sizes_and_clamping(tmp_path, sane_test_backend):
    letter = kiosk("acquire", "--source", "sane:test:0", "--area", "LETTER", "--dpi", "50",
                   "-o", str(tmp_path / "letter"), *PATIENT)
    assert letter.returncode == 0, letter.stderr
    assert "area 216 x 279 mm at 0,0" in letter.stderr  # SANE's test backend steps in whole mm
    ds = only_dataset(tmp_path / "letter")
    assert (ds.Rows, ds.Columns) == (549, 425)
    big = kiosk("acquire", "--source", "sane:test:0", "--area", "0,0,400,400", "--dpi", "25",
                "-o", str(tmp_path / "big"), *PATIENT)
    assert big.returncode == 0, big.stderr
    assert "the scanner limits the scan area to 300 x 300 mm at 0,0 (400 x 400 mm at 0,0 was asked for)" in big.stderr
    assert only_dataset(tmp_path / "big").Rows == 295


def test_cli_area_errors(tmp_path):
    bad = kiosk("acquire", "--source", "sane:test:0", "--area", "A9", "-o", str(tmp_path), *PATIENT)
    assert bad.returncode == 2 and "scan area 'A9' is neither a paper size nor X,Y,W,H" in bad.stderr
    assert "LETTER" in bad.stderr
    camera = kiosk("acquire", "--source", "demo:camera", "--area", "A4", "-o", str(tmp_path), *PATIENT)
    assert camera.returncode == 2 and "--area applies to scanners" in camera.stderr
    assert not list(tmp_path.glob("*.dcm"))
    assert set(PAPER_SIZES_MM) >= {"A4", "LETTER"}


# -- presets of one's own ---------------------------------------------------------------------------


def test_custom_presets_start_from_document():
    config = parse_config({"presets": {"Quick": {"dpi": 40, "mode": "color"}, "ID card": {"dpi": 600},
                                       "Photo": {"dpi": 400}}})
    table = presets(config.presets.tables())
    assert list(table) == ["Document", "Film", "Photo", "Quick", "ID card"]
    assert preset("quick", config.presets.tables()) == Settings(mode="color", depth=8, dpi=40, source="flatbed")
    assert table["ID card"].mode == "gray" and table["ID card"].dpi == 600
    assert table["Photo"].dpi == 400 and table["Photo"].photo


@pytest.mark.parametrize("name,values,problem", [
    ("document", {"dpi": 200}, "presets.document: write the built-in preset's name as 'Document'"),
    ("Letter (feeder)", {"dpi": 200}, "must not end with '(feeder)'"),
    ("x" * 33, {"dpi": 200}, "at most 32 characters"),
    (" Padded", {"dpi": 200}, "must not be empty or start or end with spaces"),
    ("Xray", {"dpi": "high"}, "presets.Xray: dpi = 'high' has the wrong type"),
    ("Xray", {"colour": "red"}, "presets.Xray: unknown setting 'colour'"),
    ("Xray", {"depth": 12}, "presets.Xray: depth = 12; use 8 or 16"),
    ("Xray", "300 dpi", "presets.Xray: is '300 dpi', must be a table"),
])
def test_custom_presets_are_validated(name, values, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({"presets": {name: values}})
    assert problem in caught.value.message
    assert check_preset_name("Letter") is None


def test_custom_presets_in_devices_and_acquire(tmp_path, sane_test_backend):
    config = tmp_path / "kiosk.toml"
    config.write_text('[presets.Quick]\ndpi = 40\nmode = "color"\n[presets."ID card"]\ndpi = 600\n')
    listed = kiosk("devices", config=config)
    assert listed.returncode == 0, listed.stderr
    assert "  Quick: color, 8-bit, 40 dpi, flatbed" in listed.stdout
    assert "  ID card: gray, 8-bit, 600 dpi, flatbed" in listed.stdout
    as_json = json.loads(kiosk("devices", "--json", config=config).stdout)
    assert as_json["presets"]["Quick"] == {"mode": "color", "depth": 8, "dpi": 40, "source": "flatbed", "film": False}
    scanned = kiosk("acquire", "--source", "sane:test:0", "--preset", "quick", "--area", "A6",
                    "-o", str(tmp_path / "out"), *PATIENT, config=config)
    assert scanned.returncode == 0, scanned.stderr
    assert "color, 8-bit, 40 dpi, flatbed, area 105 x 148 mm at 0,0" in scanned.stderr
    ds = only_dataset(tmp_path / "out")
    assert ds.SamplesPerPixel == 3 and (ds.Rows, ds.Columns) == (233, 165)
    unknown = kiosk("acquire", "--source", "demo:scanner", "--preset", "Xray", "-o", str(tmp_path), *PATIENT,
                    config=config)
    assert unknown.returncode == 2 and "use one of Document, Film, Photo, Quick, ID card" in unknown.stderr
