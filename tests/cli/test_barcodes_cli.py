"""``kiosk convert|acquire`` with [barcodes] rules: a page of another patient refused, separator sheets."""

from __future__ import annotations

import pydicom
from PIL import Image

from kiosk.cli import main
from tests.support.barcode_pages import blank_page, page

SMALL = (1240, 1754)  # A4 at 150 dpi
CONFIG = ('[barcodes]\npatient_id = "^PID:(\\\\w+)$"\naccession = "^ACC:(\\\\d+)$"\n'
          'separator = "^KIOSK-SEPARATOR$"\n')
PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "P100", "--accession", "555"]


def kiosk(tmp_path, capsys, *argv):
    config = tmp_path / "kiosk.toml"
    config.write_text(CONFIG, encoding="utf-8")
    code = main(["--config", str(config), *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def save(path, *pixels):
    images = [Image.fromarray(p) for p in pixels]
    images[0].save(path, save_all=len(images) > 1, append_images=images[1:], dpi=(150, 150))
    return path


def test_convert_refuses_a_page_of_another_patient(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    save(tmp_path / "in" / "own.png", page("PID:P100", "DataMatrix", seed=1, size=SMALL).pixels)
    foreign = save(tmp_path / "in" / "foreign.png", page("PID:P999", "Code128", seed=2, size=SMALL).pixels)
    code, _, err = kiosk(tmp_path, capsys, "convert", tmp_path / "in", "-o", tmp_path / "out", *PATIENT)
    assert code == 1
    assert f"{foreign}: page 1 carries a barcode of another patient (ID P999)" in err
    assert "--ignore-barcode-mismatch" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["own.dcm"]  # the other input went through

    code, _, err = kiosk(tmp_path, capsys, "convert", foreign, "-o", tmp_path / "out2", *PATIENT,
                         "--ignore-barcode-mismatch")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out2").iterdir()] == ["foreign.dcm"]


def test_convert_another_order_and_no_rules(tmp_path, capsys):
    other_order = save(tmp_path / "order.png", page("ACC:777", "QRCode", seed=3, size=SMALL).pixels)
    code, _, err = kiosk(tmp_path, capsys, "convert", other_order, "-o", tmp_path / "out", *PATIENT)
    assert code == 1 and "another order (accession 777)" in err
    (tmp_path / "kiosk.toml").unlink()
    code = main(["convert", str(other_order), "-o", str(tmp_path / "plain"), *PATIENT])  # no [barcodes]: not read
    capsys.readouterr()
    assert code == 0


def test_a_separator_sheet_starts_a_new_series_and_is_not_stored(tmp_path, capsys):
    batch = save(tmp_path / "batch.tif", blank_page(1, SMALL).pixels,
                 page("KIOSK-SEPARATOR", "Code128", seed=4, size=SMALL).pixels,
                 page("PID:P100", "PDF417", seed=5, size=SMALL).pixels)
    code, out, err = kiosk(tmp_path, capsys, "convert", batch, "-o", tmp_path / "out", *PATIENT, "--ts", "explicit")
    assert code == 0, err
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 2 and len(out.splitlines()) == 2
    found = [pydicom.dcmread(f) for f in files]
    assert len({ds.SeriesInstanceUID for ds in found}) == 2
    assert sorted(int(ds.SeriesNumber) for ds in found) == [1, 3]
    assert len({ds.StudyInstanceUID for ds in found}) == 1
    assert all(int(ds.InstanceNumber) == 1 for ds in found)


def test_acquire_refuses_the_page_and_keeps_the_pages_before(tmp_path, capsys):
    pages = save(tmp_path / "feeder.tif", blank_page(2, SMALL).pixels,
                 page("PID:P999", "QRCode", seed=6, size=SMALL).pixels, blank_page(3, SMALL).pixels)
    code, _, err = kiosk(tmp_path, capsys, "acquire", "--source", f"file:{pages}", "-o", tmp_path / "out",
                         *PATIENT, "--ts", "explicit")
    assert code == 1 and "page 2 carries a barcode of another patient (ID P999)" in err
    assert len(list((tmp_path / "out").iterdir())) == 1
    code, _, err = kiosk(tmp_path, capsys, "acquire", "--source", f"file:{pages}", "-o", tmp_path / "all",
                         *PATIENT, "--ts", "explicit", "--ignore-barcode-mismatch")
    assert code == 0, err
    assert len(list((tmp_path / "all").iterdir())) == 3
