"""``kiosk acquire`` end to end: device -> dicomizer -> files (checked by dciodvfy) or the outbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.support.paths import ROOT
PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "P-6"]


def kiosk(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in a fresh process (SANE's test backend keeps option state per process)."""
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ), timeout=timeout)


def acquired(out: Path, dciodvfy) -> list[pydicom.Dataset]:
    files = sorted(out.glob("*.dcm"))
    for path in files:
        dciodvfy(path)
    return sorted((pydicom.dcmread(p) for p in files), key=lambda ds: int(ds.InstanceNumber))


def test_demo_scanner_adf_to_folder(tmp_path, dciodvfy):
    result = kiosk("acquire", "--source", "demo:scanner", "--adf", "--dpi", "100", "-o", str(tmp_path), *PATIENT)
    assert result.returncode == 0, result.stderr
    assert "gray, 8-bit, 100 dpi, adf" in result.stderr and "wrote 3 file(s)" in result.stderr
    datasets = acquired(tmp_path, dciodvfy)
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3]
    assert {ds.ConversionType for ds in datasets} == {"SD"}
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert [float(v) for v in datasets[0].NominalScannedPixelSpacing] == pytest.approx([0.254, 0.254])
    assert str(datasets[0].PatientName) == "Doe^Jane"


def test_sane_document_and_film(tmp_path, sane_test_backend, dciodvfy):
    docs, film = tmp_path / "docs", tmp_path / "film"
    result = kiosk("acquire", "--source", "sane:test:0", "--mode", "color", "--dpi", "50", "-o", str(docs), *PATIENT)
    assert result.returncode == 0, result.stderr
    [doc] = acquired(docs, dciodvfy)
    assert doc.ConversionType == "SD" and doc.SamplesPerPixel == 3
    assert float(doc.NominalScannedPixelSpacing[0]) == pytest.approx(0.508)
    result = kiosk("acquire", "--source", "sane:test:0", "--preset", "Film", "--dpi", "50", "-o", str(film), *PATIENT)
    assert result.returncode == 0, result.stderr
    [image] = acquired(film, dciodvfy)
    assert image.ConversionType == "DF" and image.BitsStored == 16 and image.SamplesPerPixel == 1


def test_sane_adf_batch_of_ten(tmp_path, sane_test_backend, dciodvfy):
    result = kiosk("acquire", "--source", "sane:test:1", "--adf", "--dpi", "30", "-o", str(tmp_path), *PATIENT)
    assert result.returncode == 0, result.stderr
    assert len(acquired(tmp_path, dciodvfy)) == 10


def test_demo_camera_snapshots_and_clip(tmp_path, dciodvfy):
    shots, clip = tmp_path / "shots", tmp_path / "clip"
    result = kiosk("acquire", "--source", "demo:camera", "--frames", "2", "-o", str(shots), *PATIENT)
    assert result.returncode == 0, result.stderr
    datasets = acquired(shots, dciodvfy)
    assert len(datasets) == 2 and {ds.ConversionType for ds in datasets} == {"DV"}
    result = kiosk("acquire", "--source", "demo:camera", "--clip", "0.5", "-o", str(clip), *PATIENT)
    assert result.returncode == 0, result.stderr
    [movie] = acquired(clip, dciodvfy)
    assert 5 <= int(movie.NumberOfFrames) <= 15 and movie.ConversionType == "DV"  # 15 unless the machine is busy
    assert float(movie.FrameTime) == pytest.approx(1000 / 30, abs=0.01)


def test_live_stream_snapshot(tmp_path, mjpeg_stream, dciodvfy):
    result = kiosk("acquire", "--source", f"video:{mjpeg_stream.url}", "-o", str(tmp_path), *PATIENT)
    assert result.returncode == 0, result.stderr
    assert "1920x1080, 30 fps, MJPG" in result.stderr
    [frame] = acquired(tmp_path, dciodvfy)
    assert (frame.Rows, frame.Columns) == (1080, 1920)


def test_acquire_and_send_through_the_outbox(storescp):
    result = kiosk("acquire", "--source", "demo:scanner", "--dpi", "75", "--send", storescp.url, "--wait", *PATIENT)
    assert result.returncode == 0, result.stderr + result.stdout
    received = list(Path(storescp.extra["received"]).rglob("*"))
    assert len([p for p in received if p.is_file()]) == 1


def test_failures_are_messages_not_tracebacks(tmp_path, sane_test_backend):
    missing = kiosk("acquire", "--source", "sane:test:5", "-o", str(tmp_path), *PATIENT)
    assert missing.returncode == 1 and "no scanner named 'test:5'" in missing.stderr
    assert "Traceback" not in missing.stderr
    nowhere = kiosk("acquire", "--source", "demo:scanner", *PATIENT)
    assert nowhere.returncode == 2 and "add -o DIR, --send NODE, or both" in nowhere.stderr
    preset = kiosk("acquire", "--source", "demo:scanner", "--preset", "Xray", "-o", str(tmp_path), *PATIENT)
    assert preset.returncode == 2 and "use one of Document, Film, Photo" in preset.stderr
    assert not list(tmp_path.glob("*.dcm"))


def test_file_source(tmp_path, dciodvfy):
    from PIL import Image

    image = tmp_path / "page.png"
    Image.new("RGB", (320, 200), (20, 120, 200)).save(image, dpi=(150, 150))
    out = tmp_path / "out"
    result = kiosk("acquire", "--source", f"file:{image}", "-o", str(out), *PATIENT)
    assert result.returncode == 0, result.stderr
    [ds] = acquired(out, dciodvfy)
    assert ds.ConversionType == "WSD" and (ds.Rows, ds.Columns) == (200, 320)
    result = kiosk("acquire", "--source", f"file:{image}", "--preset", "Film", "-o", str(out / "film"), *PATIENT)
    assert result.returncode == 0, result.stderr
    [film] = acquired(out / "film", dciodvfy)
    assert film.ConversionType == "DF"
