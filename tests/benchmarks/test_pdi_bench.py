"""PDI export benchmark (issue 16). Run: ``.venv/bin/pytest -s tests/benchmarks/test_pdi_bench.py``.

500 MB of uncompressed objects (250 CT-like 16-bit 1024x1024 images, 2 MB each, in Explicit VR
Little Endian: STD-GEN-CD copies them as they are) exported with ``write_file_set`` (DICOMDIR,
README.TXT and web content included, flushed to the disk with ``syncfs``) against ``cp -r`` of the
same folder followed by ``sync -f``, both to the same disk, in the same run. ``cp -r`` runs once first to warm the page cache for both; then the measured
runs alternate (``KIOSK_BENCH_ROUNDS``, default 3) and the target applies to the totals:
export <= 1.5x ``cp -r``. Caches are not dropped.
``KIOSK_BENCH_QUICK=1`` exports 25 files once and asserts no target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from kiosk.media.pdi import write_file_set
from kiosk.media.profiles import PROFILES

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
COUNT = 25 if QUICK else 250
ROUNDS = 1 if QUICK else int(os.environ.get("KIOSK_BENCH_ROUNDS", "3"))
TARGET = 1.5


def ct_like(folder: Path, count: int) -> int:
    """``count`` 2 MB CT-like files differing in their SOP Instance UID and Instance Number; total bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir()
    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 4096, (1024, 1024), dtype=np.uint16).tobytes()
    study, series = generate_uid(), generate_uid()
    stem = "1.2.826.0.1.3680043.10.543.16."
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = f"{stem}{10_000 + index}"
        ds.PatientName, ds.PatientID = "Bench^PDI", "PDI-BENCH"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.Modality = "20260101", "120000", "1", "CT"
        ds.SeriesNumber, ds.InstanceNumber = 1, index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 1024
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = pixels
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"ct{index:04d}.dcm", enforce_file_format=True)
    return sum(p.stat().st_size for p in folder.iterdir())


def test_pdi_export_against_cp(tmp_path):
    source = tmp_path / "source"
    size = ct_like(source, COUNT)
    files = sorted(source.iterdir())
    subprocess.run(["cp", "-r", str(source), str(tmp_path / "warm")], check=True)
    shutil.rmtree(tmp_path / "warm")
    copies: list[float] = []
    exports: list[float] = []
    for run in range(ROUNDS):
        target = tmp_path / f"cp{run}"
        started = time.perf_counter()
        subprocess.run(["cp", "-r", str(source), str(target)], check=True)
        subprocess.run(["sync", "-f", str(target)], check=True)  # as write_file_set: the medium holds it all
        copies.append(time.perf_counter() - started)
        shutil.rmtree(target)

        target = tmp_path / f"pdi{run}"
        target.mkdir()
        started = time.perf_counter()
        result = write_file_set(target, files, PROFILES["STD-GEN-CD"], web_content=True)
        exports.append(time.perf_counter() - started)
        assert result.failed == [] and len(result.written) == COUNT
        shutil.rmtree(target)
    ratio = sum(exports) / sum(copies)
    print(f"\n[pdi] {COUNT} files, {size / 1e6:.0f} MB, {ROUNDS} round(s): write_file_set "
          f"{', '.join(f'{t:.2f}' for t in exports)} s; cp -r {', '.join(f'{t:.2f}' for t in copies)} s; "
          f"ratio {ratio:.2f} (target <= {TARGET})")
    if not QUICK:
        assert ratio <= TARGET
