"""The one transfer-syntax table: its rows agree with pydicom, and convert, config and docs follow it."""

from __future__ import annotations

import re

import pydicom
import pytest
from PIL import Image
from pydicom.uid import UID

from tests.support.dicomize_helpers import pixels_of
from tests.support.paths import ROOT
from kiosk import transfer_syntaxes as tsx
from kiosk.cli import main
from kiosk.config import parse_config
from kiosk.errors import ConfigError

NODE = {"ae_title": "PACS", "host": "127.0.0.1", "port": 104}


@pytest.mark.parametrize("name", tsx.BY_NAME)
def test_name_to_uid_and_back(name):
    row = tsx.by_name(name)
    assert tsx.BY_UID[row.uid] is row and row.name == name
    uid = UID(row.uid)
    assert uid.is_transfer_syntax
    # What pydicom knows of the UID is what the row says.
    assert uid.is_compressed == (row.encoder not in (tsx.NATIVE, None))
    lossless = uid in pydicom.uid.UncompressedTransferSyntaxes or "Lossless" in uid.name
    assert lossless == row.lossless and (row.method is None) == row.lossless
    assert not row.transcode or row.lossless  # sending never makes new instances


def test_every_uid_the_kiosk_reads_is_a_transfer_syntax_of_its_own_row():
    assert len(tsx.BY_UID) == len(tsx.TABLE) and tsx.CHOICES[0] == tsx.AUTO
    assert all(UID(row.uid).is_transfer_syntax for row in tsx.TABLE)
    assert [UID(uid).is_compressed for uid in tsx.UNCOMPRESSED] == [False] * len(tsx.UNCOMPRESSED)


def test_config_rejects_an_unknown_syntax_naming_the_tables_choices():
    with pytest.raises(ConfigError) as error:
        parse_config({"destinations": {"pacs": {**NODE, "transfer_syntax": "jpeg2000"}}})
    [line] = error.value.problems
    assert line == f"destinations.pacs.transfer_syntax: is 'jpeg2000'; use one of {', '.join(tsx.CHOICES)}"
    for name in tsx.CHOICES:
        assert parse_config({"destinations": {"pacs": {**NODE, "transfer_syntax": name}}})


def test_convert_offers_the_tables_choices(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--ts", "jpeg2000", "x.png", "-o", "out"])
    err = capsys.readouterr().err
    assert "choose from " + ", ".join(f"'{name}'" for name in tsx.CHOICES) in err


@pytest.mark.parametrize("row", tsx.BY_NAME.values(), ids=lambda row: row.name)
def test_convert_writes_the_rows_syntax_photometric_and_lossy_method(tmp_path, capsys, dciodvfy, row):
    Image.fromarray(pixels_of("rgb8")[0]).save(tmp_path / "colour.png")
    code = main(["convert", str(tmp_path / "colour.png"), "-o", str(tmp_path / "out"), "--ts", row.name,
                 "--patient-name", "Doe^Jane", "--patient-id", "PID1"])
    assert code == 0, capsys.readouterr().err
    ds = pydicom.dcmread(tmp_path / "out" / "colour.dcm")
    dciodvfy(tmp_path / "out" / "colour.dcm")
    assert ds.file_meta.TransferSyntaxUID == row.uid
    assert ds.PhotometricInterpretation == row.photometric(3, "RGB")
    assert ds.LossyImageCompression == ("00" if row.lossless else "01")
    assert ds.get("LossyImageCompressionMethod") == row.method


def _doc_rows() -> dict[str, list[str]]:
    """The first table under "Transfer syntaxes" in docs/objects.md: ``--ts`` name -> its other cells."""
    section = (ROOT / "docs" / "objects.md").read_text().split("## Transfer syntaxes")[1]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i, line in enumerate(lines[start:]) if not line.startswith("|")), len(lines) - start)
    rows = {}
    for line in lines[start + 2:start + end]:  # after the header and its rule
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[re.fullmatch(r"`([a-z0-9-]+)`( \(default\))?", cells[0])[1]] = cells[1:]
    return rows


def test_docs_list_exactly_the_tables_choices_and_rules():
    rows = _doc_rows()
    assert list(rows) == [*tsx.BY_NAME, tsx.AUTO]
    written_with = {tsx.NATIVE: "pydicom", tsx.PILLOW: "Pillow"}
    for name, (title, uid, lossless, encoder, rgb_as, transcode) in list(rows.items())[:-1]:
        row = tsx.by_name(name)
        assert title.startswith(row.title), name
        assert (uid, lossless, rgb_as, transcode) == (row.uid, "yes" if row.lossless else "no", row.rgb_as,
                                                      "yes" if row.transcode else "no"), name
        assert encoder == written_with.get(row.encoder, row.encoder), name


def test_networking_docs_name_the_choices_sending_converts_to():
    text = " ".join((ROOT / "docs" / "networking.md").read_text().split())
    paragraph = text.split("A destination's `transfer_syntax` (other than `auto`)")[1].split("at send time")[0]
    converted, lossy = paragraph.split("(lossless")[0], paragraph.split("The lossy choices")[1]

    def names(part: str) -> list[str]:
        return [name for name in re.findall(r"`([a-z0-9-]+)`", part) if name in tsx.BY_NAME]

    assert names(converted) == [row.name for row in tsx.BY_NAME.values() if row.transcode]
    assert sorted(names(lossy)) == sorted(row.name for row in tsx.BY_NAME.values() if not row.transcode)
