"""kiosk.barcodes: every format read off a 300 dpi page; the [barcodes] rules; the station's guard."""

from __future__ import annotations

import numpy as np
import pytest

from kiosk import barcodes
from kiosk.barcodes import Barcode, BarcodeMismatch, Mismatch, Verdict
from kiosk.capture import Capture, SourceKind
from kiosk.config import BarcodesConfig
from kiosk.dicomize import BuildOptions
from kiosk.station import FolderOutput, Station
from kiosk.study import StudyContext
from tests.support.barcode_pages import FORMATS, blank_page, page

RULES = BarcodesConfig(patient_id=r"^PID:(\w+)$", accession=r"^ACC:(?P<accession>\d+)$", separator=r"^SEPARATOR$")
CONTEXT = StudyContext(patient_name="Doe^Jane", patient_id="P100", accession="555")


def capture_of(pixels, index=0) -> Capture:
    return Capture(kind=SourceKind.SCANNED_DOCUMENT, pixels=pixels, dpi=300, index=index)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("angle", [-2.5, 1.5])
def test_every_format_read_off_a_300_dpi_page(fmt, angle):
    text = "PID-20240517" if fmt == "Code39" else "PID:20240517"
    scanned = page(text, fmt, seed=7, angle=angle)
    assert barcodes.read(capture_of(scanned.pixels)) == [Barcode(fmt, text)]


def test_colour_sideways_and_small_symbols():
    gray = page("PID-4711", "Code39", seed=3, module=3, angle=0.5).pixels
    sideways = np.ascontiguousarray(np.rot90(gray))  # a label stuck on across the page
    assert [b.text for b in barcodes.read(capture_of(sideways))] == ["PID-4711"]
    rgb = np.repeat(page("ACC:9911", "QRCode", seed=4).pixels[..., None], 3, axis=2)
    assert [b.text for b in barcodes.read(capture_of(rgb))] == ["ACC:9911"]


def test_a_page_without_barcodes_reads_nothing():
    assert barcodes.read(capture_of(blank_page(1).pixels)) == []


def test_rules_take_group_1_or_the_named_group():
    assert barcodes.value_of(r"^PID:(\w+)$", "patient_id", "PID:P100") == "P100"
    assert barcodes.value_of(r"(?P<x>A)(?P<patient_id>\d+)", "patient_id", "A42") == "42"
    assert barcodes.value_of(r"^\d{6}$", "patient_id", "123456") == "123456"  # no group: the match
    assert barcodes.value_of(r"^PID:(\w+)$", "patient_id", "ACC:1") is None
    assert barcodes.value_of("", "patient_id", "anything") is None


@pytest.mark.parametrize("texts, verdict", [
    (["PID:P100"], Verdict()),  # the session's own patient
    (["PID:P999"], Verdict(Mismatch("patient_id", "P999"))),
    (["PID:P100", "ACC:777"], Verdict(Mismatch("accession", "777"))),  # right patient, another order
    (["ACC:555", "NOTHING:1"], Verdict()),
    (["SEPARATOR", "PID:P999"], Verdict(separator=True)),  # a separator sheet is not stored: nothing to flag
    ([], Verdict()),
])
def test_judge(texts, verdict):
    assert barcodes.judge([Barcode("QRCode", t) for t in texts], CONTEXT, RULES) == verdict


def test_a_session_without_an_id_or_accession_is_not_compared_on_it():
    assert not barcodes.judge([Barcode("QRCode", "PID:P999"), Barcode("QRCode", "ACC:1")],
                              StudyContext(patient_name="Doe^Jane"), RULES)


def test_no_rules_no_reading():
    foreign = capture_of(page("PID:P999", "QRCode", seed=1).pixels)
    assert barcodes.check(foreign, CONTEXT, BarcodesConfig()) is foreign
    assert Verdict.of(barcodes.check(foreign, CONTEXT, RULES)).mismatch == Mismatch("patient_id", "P999")


def test_verdict_survives_json_and_edits():
    from kiosk import processing

    flagged = barcodes.check(capture_of(page("PID:P999", "DataMatrix", seed=2).pixels), CONTEXT, RULES)
    assert Verdict.from_json(Verdict.of(flagged).to_json()) == Verdict.of(flagged)
    assert Verdict.of(processing.rotate(flagged)).mismatch is not None  # rotating keeps the flag


# -- the station ----------------------------------------------------------------------------------
SMALL = (1240, 1754)  # A4 at 150 dpi: the station's tests are about the guard, not the reading
FAST = BuildOptions(transfer_syntax="explicit")


def pages(*texts: str) -> list[Capture]:
    return [capture_of(page(t, "Code128", seed=i, size=SMALL).pixels if t else blank_page(i, SMALL).pixels, index=i)
            for i, t in enumerate(texts)]


def test_persisted_session_blocks_send_until_removed_or_allowed(tmp_path):
    from kiosk.session import SessionStore

    station = Station.start(SessionStore(tmp_path / "sessions"), CONTEXT, FAST, barcodes=RULES)
    for capture in pages("", "PID:P999", "PID:P100"):
        station.add(capture)
    assert [(i, m.value) for i, m in station.flagged()] == [(1, "P999")]
    out = FolderOutput(tmp_path / "out")
    (tmp_path / "out").mkdir()
    with pytest.raises(BarcodeMismatch) as refused:
        station.send([out])
    assert "page 2" in refused.value.message and "ID P999" in refused.value.message
    assert station.state == "open" and not out.files and len(station.session) == 3  # nothing built
    kept = SessionStore(tmp_path / "sessions").load(station.session.folder)
    assert [i for i, _ in barcodes.flagged(kept.captures)] == [1]  # the flag is on disk with the page
    station.session.delete(1)
    station.send([out])
    assert len(out.files) == 2


def test_send_allowed_is_audited_without_the_value(tmp_path):
    from kiosk.audit import trail
    from kiosk.config import parse_config
    from kiosk.session import SessionStore

    trail.configure(parse_config({}), tmp_path / "audit")
    try:
        station = Station.start(SessionStore(tmp_path / "sessions"), CONTEXT, FAST, barcodes=RULES)
        station.add(pages("PID:P999")[0])
        (tmp_path / "out").mkdir()
        station.send([FolderOutput(tmp_path / "out")], allow_mismatch=True)
        assert station.objects == 1
        [alert] = [e for e in trail.queue().entries() if e.event == "Security Alert"]
    finally:
        trail.configure(parse_config({}))
    assert alert.event_type == "Use of Restricted Function" and alert.outcome == 0
    assert b"admin PIN" in alert.frame and b"P999" not in alert.frame


def _series(files):
    import pydicom

    found = [pydicom.dcmread(f) for f in files]
    return [(int(ds.SeriesNumber), ds.SeriesInstanceUID, int(ds.InstanceNumber)) for ds in found]


def test_separator_sheet_starts_new_series_and_is_not_stored(tmp_path):
    from kiosk.session import SessionStore

    # Streaming (the CLI): one add_pages call, and page by page as a feeder gives them.
    (tmp_path / "a").mkdir()
    out = FolderOutput(tmp_path / "a")
    station = Station.stream(CONTEXT, FAST, [out], barcodes=RULES)
    station.add_pages(pages("", "SEPARATOR", "PID:P100"))
    series = _series(out.files)
    assert len(series) == 2 and series[0][1] != series[1][1]
    assert [(n, i) for n, _, i in series] == [(1, 1), (3, 1)]
    # Persisted (the touch UI): the sheet is kept for review, left out when sent.
    (tmp_path / "b").mkdir()
    persisted = Station.start(SessionStore(tmp_path / "sessions"), CONTEXT, FAST, barcodes=RULES)
    for capture in pages("SEPARATOR", "", "", "SEPARATOR", ""):
        persisted.add(capture)
    out = FolderOutput(tmp_path / "b")
    persisted.send([out])
    series = _series(out.files)
    assert len(series) == 3 and len({uid for _, uid, _ in series}) == 2
    assert [(n, i) for n, _, i in series] == [(1, 1), (1, 2), (3, 1)]


def test_streaming_refuses_unless_ignored(tmp_path):

    (tmp_path / "out").mkdir()
    out = FolderOutput(tmp_path / "out")
    station = Station.stream(CONTEXT, FAST, [out], barcodes=RULES)
    with pytest.raises(BarcodeMismatch, match="page 2 carries a barcode of another patient .ID P999."):
        station.add_pages(pages("", "PID:P999"))
    assert not out.files  # all pages of one input or none
    ignoring = Station.stream(CONTEXT, FAST, [out], barcodes=RULES, ignore_barcode_mismatch=True)
    ignoring.add_pages(pages("", "PID:P999"))
    assert len(out.files) == 2
