"""``kiosk convert``: files in, valid DICOM files out, one line per output or problem."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames

from tests.support.dicomize_helpers import gradient, jpeg_bytes, pdf_bytes, pixels_of, with_frame_header
from kiosk.cli import main
from tests.support.worklist_data import make_worklist_item

PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "PID1"]


def run(capsys, *argv):
    code = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def good_inputs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "photo.jpg").write_bytes(jpeg_bytes(pixels_of("rgb8")[0], quality=92))
    Image.fromarray(pixels_of("gray16")[0]).save(folder / "film.png")
    Image.fromarray(pixels_of("rgb8")[0]).save(folder / "pages.tif", save_all=True,
                                                append_images=[Image.fromarray(pixels_of("rgb8", 1)[0])])
    (folder / "report.pdf").write_bytes(pdf_bytes())


def test_converts_a_folder(tmp_path, capsys, dciodvfy):
    good_inputs(tmp_path / "in")
    code, out, err = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *PATIENT)
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["film.dcm", "pages-1.dcm", "pages-2.dcm", "photo.dcm", "report.dcm"]
    assert len(out) == 5 and all("<-" in line for line in out)
    for name in written:
        dciodvfy(tmp_path / "out" / name)
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o600  # patient data: owner only
    photo = pydicom.dcmread(tmp_path / "out" / "photo.dcm")
    original = (tmp_path / "in" / "photo.jpg").read_bytes()
    [frame] = generate_frames(photo.PixelData, number_of_frames=1)
    assert frame.rstrip(b"\0") == original.rstrip(b"\0")  # the JPEG stream, byte for byte
    film = pydicom.dcmread(tmp_path / "out" / "film.dcm")
    assert np.array_equal(film.pixel_array, pixels_of("gray16")[0])
    studies = {pydicom.dcmread(tmp_path / "out" / n).StudyInstanceUID for n in written}
    assert len(studies) == 1


def test_bad_inputs_one_line_each_others_converted(tmp_path, capsys):
    folder = tmp_path / "in"
    good_inputs(folder)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    (folder / "cut.jpg").write_bytes(jpeg_bytes(gradient())[:200])
    png = folder / "cut.png"
    Image.fromarray(gradient(300, 300)).save(png)
    png.write_bytes(png.read_bytes()[:400])
    Image.new("L", (3000, 2000)).save(folder / "huge.png")
    code, out, err = run(capsys, folder, "-o", tmp_path / "out", "--max-pixels", 5_000_000, *PATIENT)
    assert code == 1
    errors = [line for line in err if line.startswith("kiosk: error:")]
    assert len(errors) == 5
    for name in ("zero.jpg", "notes.png", "cut.jpg", "cut.png", "huge.png"):
        assert sum(name in line for line in errors) == 1, name
    assert "Traceback" not in "\n".join(err)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["film.dcm", "pages-1.dcm", "pages-2.dcm", "photo.dcm", "report.dcm"]  # no partial files


def test_files_that_do_not_decode_as_they_claim_are_refused(tmp_path, capsys, dciodvfy):
    """A JPEG header that lies about the size, two frame headers, a PDF of random bytes:
    one line each, nothing written for them; a 4:4:4 JPEG is converted (decoded, valid)."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo = jpeg_bytes(pixels_of("rgb8")[0])
    (folder / "lie.jpg").write_bytes(with_frame_header(photo, 9000, 9000))
    (folder / "two.jpg").write_bytes(with_frame_header(photo, 20000, 20000, "before"))
    (folder / "noise.pdf").write_bytes(b"%PDF-1.5\n" + np.random.default_rng(3).bytes(3000) + b"\n%%EOF\n")
    (folder / "full.jpg").write_bytes(jpeg_bytes(pixels_of("rgb8")[0], subsampling=0))
    # Every offset in the cross-reference table 2 bytes short: viewers (and pypdf) repair that, quietly.
    (folder / "shifted.pdf").write_bytes(pdf_bytes().replace(b"1 0 obj", b"  1 0 obj", 1))
    code, out, err = run(capsys, folder, "-o", tmp_path / "out", *PATIENT)
    assert code == 1
    errors = [line for line in err if line.startswith("kiosk: error:")]
    expected = {"lie.jpg": "does not match its header", "two.jpg": "more than one frame header",
                "noise.pdf": "not a readable PDF"}
    assert len(errors) == len(expected), err
    for name, problem in expected.items():
        assert sum(str(folder / name) in line and problem in line for line in errors) == 1, (name, err)
    assert "Traceback" not in "\n".join(err) and not any("WARNING" in line for line in err), err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["full.dcm", "shifted.dcm"]
    dciodvfy(tmp_path / "out" / "full.dcm")


def test_invalid_patient_data_writes_nothing(tmp_path, capsys):
    good_inputs(tmp_path / "in")
    code, out, err = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--patient-name", "Doe^Jane",
                         "--patient-id", "P" * 70, "--birth-date", "31.12.1980", "--sex", "male")
    assert code == 1 and out == []
    assert len([line for line in err if line.startswith("kiosk: error:")]) == 3
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("as_array", [False, True])
def test_worklist_item_json(tmp_path, capsys, dciodvfy, as_array):
    item = make_worklist_item("Yamada^Tarou=山田^太郎=やまだ^たろう", "PID087", "ACC087", "\\ISO 2022 IR 87")
    data = item.to_json_dict()
    path = tmp_path / "item.json"
    path.write_text(json.dumps([data] if as_array else data), encoding="utf-8")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(jpeg_bytes(gradient()))
    code, out, err = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--worklist-item", path,
                         "--series-description", "Scans")
    assert code == 0, err
    ds = pydicom.dcmread(tmp_path / "out" / "a.dcm")
    dciodvfy(tmp_path / "out" / "a.dcm")
    assert str(ds.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert ds.SpecificCharacterSet == ["", "ISO 2022 IR 87"]
    assert ds.StudyInstanceUID == item.StudyInstanceUID and ds.AccessionNumber == "ACC087"
    assert ds.RequestAttributesSequence[0].ScheduledProcedureStepID == "SPSACC087"
    assert ds.SeriesDescription == "Scans"


def test_worklist_item_edited_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "item.json"
    path.write_text(json.dumps(make_worklist_item("DOE^JANE", "PID1").to_json_dict()))
    (tmp_path / "a.png").write_bytes(b"")
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--worklist-item", path,
                       "--patient-name", "DOE^JANET")
    assert code == 0, err
    ds = pydicom.dcmread(tmp_path / "out" / "a.dcm")
    assert str(ds.PatientName) == "DOE^JANET"
    assert str(ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientName) == "DOE^JANE"


@pytest.mark.parametrize("content,problem", [
    ("[]", "holds 0 worklist items"),
    ("{not json", "is not JSON"),
    ("", "is not JSON"),
    ("{}", "is an empty JSON object, not a worklist item"),
    ('"Doe^Jane"', "is not a DICOM JSON object (it holds a JSON string)"),
    ('{"PatientName": "Doe^Jane"}', 'is not valid DICOM JSON: key "PatientName" is not a tag'),
    ('{"00100010": "Doe^Jane"}', 'is not valid DICOM JSON: the value of 00100010 is not an object with a "vr"'),
    ('{"00080060": {"vr": "CS", "Value": ["OT"]}}', "is DICOM JSON but no worklist item"),
])
def test_bad_worklist_json(tmp_path, capsys, content, problem):
    """One error line naming the file and what is wrong with it (not "patient ID and name empty")."""
    path = tmp_path / "item.json"
    path.write_text(content)
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--worklist-item", path)
    assert code == 1
    errors = [line for line in err if line.startswith("kiosk: error:")]
    assert len(errors) == 1 and str(path) in errors[0] and problem in errors[0], err
    assert "kiosk worklist --json" in err[-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_multiframe_and_transfer_syntax(tmp_path, capsys, dciodvfy):
    pages = [Image.fromarray(pixels_of("gray8", i)[0]) for i in range(3)]
    pages[0].save(tmp_path / "doc.tif", save_all=True, append_images=pages[1:])
    code, out, err = run(capsys, tmp_path / "doc.tif", "-o", tmp_path / "out", "--multiframe", "--ts", "rle",
                         "--conversion-type", "SD", "--modality", "doc", *PATIENT)
    assert code == 0, err
    ds = pydicom.dcmread(tmp_path / "out" / "doc.dcm")
    dciodvfy(tmp_path / "out" / "doc.dcm")
    assert ds.NumberOfFrames == 3 and ds.ConversionType == "SD" and ds.Modality == "DOC"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert np.array_equal(ds.pixel_array[2], pixels_of("gray8", 2)[0])


def test_never_overwrites(tmp_path, capsys):
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    for _ in range(2):
        assert run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", *PATIENT)[0] == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.dcm", "a~1.dcm"]


def test_non_ascii_name_from_the_command_line(tmp_path, capsys):
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out",
                       "--patient-name", "Иванов^Иван", "--patient-id", "R1")
    assert code == 0, err
    ds = pydicom.dcmread(tmp_path / "out" / "a.dcm")
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "Иванов^Иван"


def test_worklist_json_from_kiosk_worklist(tmp_path, capsys, wlmscpfs, worklist_items):
    """What 'kiosk worklist --json' prints (from DCMTK wlmscpfs) is what --worklist-item takes."""
    code = main(["worklist", "--server", wlmscpfs.url, "--station-aet", "", "--patient-id", "PID192", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    items = json.loads(out)
    assert len(items) == 1
    path = tmp_path / "item.json"
    path.write_text(out, encoding="utf-8")
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--worklist-item", path)
    assert code == 0, err
    ds = pydicom.dcmread(tmp_path / "out" / "a.dcm")
    source = next(item for item in worklist_items if item.PatientID == "PID192")
    assert str(ds.PatientName) == str(source.PatientName)
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.RequestAttributesSequence[0].RequestedProcedureID == source.RequestedProcedureID


def test_a_huge_sparse_file_is_refused_from_its_first_bytes(tmp_path):
    """A 4 GB sparse x.png used to be read whole (29 s, 4.25 GB of memory) before it was refused."""
    import subprocess
    import sys

    huge = tmp_path / "x.png"
    with huge.open("wb") as handle:
        handle.truncate(4 << 30)
    # The child reports its own peak (VmHWM): ru_maxrss would count the forking test process too.
    code = ("import sys; from kiosk.cli import main; code = main(sys.argv[1:]); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr); "
            "sys.exit(code)")
    child = subprocess.run([sys.executable, "-c", code, "convert", str(huge), "-o", str(tmp_path / "out"), *PATIENT],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    message = child.stderr
    assert child.returncode == 1, message
    assert f"kiosk: error: {huge}: has an image name (.png) but is not a JPEG, PNG" in message
    peak_kb = int(message.split("VmHWM:")[1].split()[0])
    assert peak_kb < 500 << 10, f"peak memory {peak_kb >> 10} MB"
    assert list((tmp_path / "out").iterdir()) == []


def test_an_endoscopy_order_with_its_codes_operator_body_part_and_site(tmp_path, capsys, dciodvfy):
    """The ES order's modality and codes reach the object through `--worklist-item`, with the site's
    address and department from [local] and the operator and body part from the command line."""
    from tests.support.worklist_data import appendix_a_item

    item = appendix_a_item()
    (tmp_path / "item.json").write_text(json.dumps(item.to_json_dict()), encoding="utf-8")
    (tmp_path / "kiosk.toml").write_text('[local]\ninstitution_name = "Klinikum Nord"\n'
                                         'institution_address = "Hauptstrasse 1, Nordstadt"\n'
                                         'department = "Gastroenterologie"\n', encoding="utf-8")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "frame.jpg").write_bytes(jpeg_bytes(pixels_of("rgb8")[0]))
    code = main(["--config", str(tmp_path / "kiosk.toml"), "convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--worklist-item", str(tmp_path / "item.json"), "--operator", "Keller^Eva", "--body-part", "stomach"])
    _, err = capsys.readouterr()
    assert code == 0, err
    ds = pydicom.dcmread(tmp_path / "out" / "frame.dcm")
    dciodvfy(tmp_path / "out" / "frame.dcm")
    assert ds.Modality == "ES" and ds.BodyPartExamined == "STOMACH" and str(ds.OperatorsName) == "Keller^Eva"
    assert (ds.InstitutionAddress, ds.InstitutionalDepartmentName) == ("Hauptstrasse 1, Nordstadt", "Gastroenterologie")
    assert ds.ProcedureCodeSequence[0].CodeValue == "GAS01"
    assert ds.PerformedProtocolCodeSequence[0].CodeMeaning == "Standardprotokoll Endoskopie"
    assert ds.OtherPatientIDsSequence[0].PatientID == "NAT-4711"


def test_a_body_part_that_is_no_code_string_is_refused(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(jpeg_bytes(gradient()))
    code, _, err = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *PATIENT, "--body-part", "left knee!")
    assert code == 2 and "body part 'LEFT KNEE!' is not a DICOM code string" in "\n".join(err)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
