"""``kiosk convert|acquire --deskew --auto-crop --drop-blank ...`` and the Document preset's clean-up,
on real files: the DICOM objects' pixels read back and measured."""

from __future__ import annotations

import numpy as np
import pydicom
from PIL import Image

from kiosk import cleanup
from kiosk.capture import Capture, SourceKind
from kiosk.cleanup import CleanUp
from kiosk.cli import main
from tests.support import pages

PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "PID1"]
DPI = 150


def run(capsys, *argv):
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def batch(rng) -> list[Image.Image]:
    """A skewed text page, a noise-only back, and a signed page on a dark lid."""
    skewed = pages.skewed(pages.text_page(DPI, rng), -4.0)
    back = pages.noise_back(DPI, rng, holes=True)
    signed = pages.blank_paper(DPI)
    pages.draw_signature(signed, DPI, rng)
    on_lid, _box = pages.on_dark_bed(signed, (40, 60, 80, 30))
    return [skewed, back, on_lid]


def skew_of(ds: pydicom.Dataset) -> float:
    page = Capture(SourceKind.SCANNED_DOCUMENT, pixels=ds.pixel_array.astype(np.uint8), dpi=DPI)
    return cleanup.plan(page, CleanUp(deskew=True)).angle


def test_convert_deskews_crops_and_leaves_out_blank_pages(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, image in zip(("a-skewed", "b-back", "c-signed"), batch(np.random.default_rng(1))):
        image.save(folder / f"{name}.png", dpi=(DPI, DPI))
    code, out, err = run(capsys, "convert", folder, "-o", tmp_path / "out", "--deskew", "--auto-crop",
                         "--drop-blank", *PATIENT)
    assert code == 0, err
    assert "b-back.png: 1 blank page left out" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-skewed.dcm", "c-signed.dcm"]
    skewed = pydicom.dcmread(tmp_path / "out" / "a-skewed.dcm")
    assert abs(skew_of(skewed)) <= 0.3
    signed = pydicom.dcmread(tmp_path / "out" / "c-signed.dcm")
    size = pages.a4_size(DPI)
    margin = 2 * round(2 / 25.4 * DPI)
    assert abs(signed.Columns - (size[0] + margin)) <= 6 and abs(signed.Rows - (size[1] + margin)) <= 6

    code, _out, err = run(capsys, "convert", folder, "-o", tmp_path / "plain", *PATIENT)
    assert code == 0 and len(list((tmp_path / "plain").iterdir())) == 3  # without the flags: as they came
    assert abs(skew_of(pydicom.dcmread(tmp_path / "plain" / "a-skewed.dcm")) - 4.0) <= 0.3


def test_acquire_applies_the_document_preset_and_says_what_it_left_out(tmp_path, capsys):
    images = batch(np.random.default_rng(2))
    scan = tmp_path / "batch.tif"
    images[0].save(scan, dpi=(DPI, DPI), save_all=True, append_images=images[1:])
    code, _out, err = run(capsys, "acquire", "--source", f"file:{scan}", "--preset", "Document",
                          "-o", tmp_path / "out", *PATIENT)
    assert code == 0, err
    assert "1 blank page left out" in err
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 2
    first = min((pydicom.dcmread(p) for p in written), key=lambda ds: int(ds.InstanceNumber))
    assert abs(skew_of(first)) <= 0.3  # Document deskews

    code, _out, err = run(capsys, "acquire", "--source", f"file:{scan}", "--preset", "Document", "--no-cleanup",
                          "-o", tmp_path / "raw", *PATIENT)
    assert code == 0 and "left out" not in err and len(list((tmp_path / "raw").iterdir())) == 3
