"""``kiosk media export``: chosen studies of files or a medium written as a PDI File-set, and as an ISO image."""

from __future__ import annotations

import argparse
import shutil

import pytest
from pydicom.fileset import FileSet

from kiosk.cli import build_parser
from kiosk.config import Config
from kiosk.errors import UsageError
from tests.support.outbox_data import make_instances


def media(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["media", *argv])


def test_export_chosen_studies_from_a_medium_adds_to_a_stick_and_makes_an_iso(tmp_path, capsys):
    first = make_instances(tmp_path / "a", 2, patient_id="P1")
    make_instances(tmp_path / "b", 2, patient_id="P2")
    from pydicom import dcmread

    study = str(dcmread(next(iter(first.values()))).StudyInstanceUID)
    medium = tmp_path / "medium"
    medium.mkdir()
    args = media("export", str(tmp_path / "a"), str(tmp_path / "b"), "--to", str(medium), "--profile", "STD-GEN-USB")
    assert args.run(args, Config()) == 0
    assert len(FileSet(medium / "DICOMDIR")) == 4
    # From that medium (DICOMDIR, README.TXT and web pages are skipped) only the first study, to a stick
    stick = tmp_path / "stick"
    args = media("export", str(medium), "--to", str(stick), "--study", study, "--no-web")
    assert args.run(args, Config()) == 0
    assert sorted(str(i.SOPInstanceUID) for i in FileSet(stick / "DICOMDIR")) == sorted(first)
    assert not (stick / "INDEX.HTM").exists()
    assert "2 object(s) in the File-set" in capsys.readouterr().out
    if shutil.which("xorriso"):
        iso = tmp_path / "out.iso"
        args = media("export", str(tmp_path / "a"), "--iso", str(iso), "--label", "p1")
        assert args.run(args, Config()) == 0 and iso.stat().st_size > 0


def test_export_refusals(tmp_path):
    make_instances(tmp_path / "a", 1)
    with pytest.raises(UsageError, match="not a media profile"):
        args = media("export", str(tmp_path / "a"), "--to", str(tmp_path / "x"), "--profile", "STD-GEN-FLOPPY")
        args.run(args, Config())
    with pytest.raises(UsageError, match="nowhere to export"):
        args = media("export", str(tmp_path / "a"))
        args.run(args, Config())
    with pytest.raises(Exception, match="no DICOM objects to export in the chosen studies"):
        args = media("export", str(tmp_path / "a"), "--to", str(tmp_path / "x"), "--study", "1.2.3")
        args.run(args, Config())
