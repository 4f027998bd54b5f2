"""The study-context table (kiosk.study.ATTRIBUTES) drives reading, edit tracking, writing and the JSON form;
the touch UI's route and the CLI's (`kiosk worklist --json` + `--worklist-item`) give the same objects."""

from __future__ import annotations

import json

import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.support.dicomize_helpers import capture_of
from tests.support.paths import ROOT
from kiosk.cli import main
from kiosk.dicomize import build_datasets
from kiosk.session import SessionStore, context_from_dict, context_to_dict
from kiosk.study import (ATTRIBUTES, MANUAL, PATIENT, REQUEST, SERIES, STUDY, ReferencedStudy, StudyContext,
                         sequence_from, sequence_items)

SC_STUDY = "1.2.840.10008.3.1.2.3.1"


def sample(attribute, n: int = 1):
    """A valid value for the row's VR, distinct per row and per ``n``."""
    index = ATTRIBUTES.index(attribute) + 10 * n
    return {
        "PN": f"ROW{index}^GIVEN",
        "LO": f"LO value {index}",
        "SH": f"SH{index}",
        "DA": f"19{index % 90 + 10:02d}0102",
        "TM": f"10{index % 60:02d}00",
        "UI": f"1.2.826.0.1.3680043.10.{index}",
        "CS": {"sex": "FMO"[n % 3], "modality": ("XC", "SM", "ES")[n % 3]}.get(attribute.field, "X"),
        "AS": f"{index % 100:03d}Y",
        "DS": f"{index}.5",
        "SQ": (ReferencedStudy(SC_STUDY, f"1.2.826.0.1.3680043.11.{index}"),) if attribute.field == "referenced_studies"
        else (code_item(f"C{index}", f"Meaning {index} ÄÖ"),),
    }[attribute.vr]


def code_item(value: str, meaning: str) -> dict:
    """A code sequence item in the DICOM JSON model (as a context holds sequence items)."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "99KIOSK", meaning
    return item.to_json_dict()


def put(ds: Dataset, path: str, attribute, value) -> None:
    """Set ``value`` at ``path`` ("Keyword" or "Sequence>Keyword") as a worklist item or query result holds it."""
    *outer, keyword = path.split(">")
    for sequence in outer:
        if sequence not in ds:
            setattr(ds, sequence, Sequence([Dataset()]))
        ds = getattr(ds, sequence)[0]
    if attribute.vr == "SQ":
        value = Sequence(sequence_items(value))
    setattr(ds, keyword, value)


def full_item(column: str, n: int = 1) -> Dataset:
    """A worklist item ("worklist") or PACS study result ("query") holding every row the table reads from it."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for attribute in ATTRIBUTES:
        path = getattr(attribute, column)
        if path and path not in _paths_before(attribute, column):
            put(ds, path, attribute, sample(attribute, n))
    return ds


def _paths_before(attribute, column: str) -> set[str]:
    """Paths an earlier row already reads (the worklist's procedure description is also the study's)."""
    return {getattr(a, column) for a in ATTRIBUTES[:ATTRIBUTES.index(attribute)]}


def expected_read(attribute, column: str, n: int = 1):
    path = getattr(attribute, column)
    owner = next(a for a in ATTRIBUTES if getattr(a, column) == path)  # the row whose sample is at that path
    return sample(owner, n)


@pytest.mark.parametrize("column, read", [("worklist", StudyContext.from_worklist),
                                          ("query", StudyContext.from_pacs_study)])
def test_every_row_is_read_from_where_the_table_says(column, read):
    context = read(full_item(column), source_ae="PEER")
    for attribute in ATTRIBUTES:
        got = getattr(context, attribute.field)
        if getattr(attribute, column):
            assert got == expected_read(attribute, column), attribute.field
        else:
            assert got in ("", ()), f"{attribute.field} is not in a {column} item but was read as {got!r}"
    assert context.charset == "ISO_IR 192" and context.source_ae == "PEER"
    context.validate()


def object_value(ds: Dataset, attribute, keyword: str = ""):
    """The row's value in ``ds``: under its keyword in its module, or under ``keyword`` (its request or performed one)."""
    in_request = keyword == attribute.request if keyword else attribute.module == REQUEST
    holder = ds.RequestAttributesSequence[0] if in_request else ds
    value = holder.get(keyword or attribute.keyword)
    if attribute.vr == "SQ":
        return sequence_from(attribute.keyword, value or ())
    return "" if value is None else str(value)


def test_every_row_is_written_in_its_module():
    values = {a.field: sample(a) for a in ATTRIBUTES}
    [ds] = build_datasets([capture_of("gray8")], StudyContext.manual(**values))
    for attribute in ATTRIBUTES:
        assert object_value(ds, attribute) == values[attribute.field], attribute.field
        if attribute.request:  # the order's own values are repeated in the request item
            assert object_value(ds, attribute, attribute.request) == values[attribute.field], attribute.request
        if attribute.performed:  # and what was scheduled is what was performed
            assert object_value(ds, attribute, attribute.performed) == values[attribute.field], attribute.performed
    modules = {a.module for a in ATTRIBUTES}
    assert modules == {PATIENT, STUDY, REQUEST, SERIES}


def test_empty_rows_are_written_as_their_type_says():
    [ds] = build_datasets([capture_of("gray8")], StudyContext.manual(patient_name="DOE^JANE", patient_id="P1"))
    for attribute in ATTRIBUTES:
        if attribute.module in (PATIENT, STUDY):
            present = attribute.keyword in ds
            assert present == (attribute.type != "3"), attribute.field
            if attribute.type == "1":
                assert ds[attribute.keyword].value, f"{attribute.field}: a Type 1 attribute got no default"
    assert "RequestAttributesSequence" not in ds  # no order, no request item


@pytest.mark.parametrize("attribute", ATTRIBUTES, ids=lambda a: a.field)
def test_an_edit_is_recorded_in_original_attributes_when_the_row_is_tracked(attribute):
    item = full_item("worklist")
    if not attribute.worklist:
        put(item, attribute.keyword, attribute, sample(attribute))  # a value the edit replaces
    context = StudyContext.from_worklist(item, source_ae="WLM")
    before = getattr(context, attribute.field)
    edited = context.with_edits(**{attribute.field: sample(attribute, 2)})
    assert getattr(edited, attribute.field) == sample(attribute, 2)
    [ds] = build_datasets([capture_of("gray8")], edited)
    if not attribute.tracked:
        assert "OriginalAttributesSequence" not in ds
        return
    [modification] = ds.OriginalAttributesSequence
    assert modification.SourceOfPreviousValues == "WLM"
    assert modification.ReasonForTheAttributeModification == "CORRECT"
    [old] = modification.ModifiedAttributesSequence
    assert list(old.keys()) == [old[attribute.keyword].tag]  # only the changed attribute
    assert str(old[attribute.keyword].value) == str(before) != ""


def test_a_typed_context_records_no_original_attributes():
    context = StudyContext.manual(patient_name="DOE^JANE", patient_id="P1")
    assert context.origin == MANUAL
    [ds] = build_datasets([capture_of("gray8")], context.with_edits(patient_id="P2"))
    assert "OriginalAttributesSequence" not in ds


def test_the_json_form_keeps_every_row_the_character_set_and_the_edits():
    item = full_item("worklist")
    item.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    item.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    context = StudyContext.from_worklist(item, source_ae="WLM").with_edits(patient_id="PID9", modality="xc")
    text = json.dumps(context_to_dict(context), ensure_ascii=False)
    back = context_from_dict(json.loads(text))
    assert back == context
    assert back.charset == ("", "ISO 2022 IR 87") and back.original == {"PatientID": sample(ATTRIBUTES[1])}
    for attribute in ATTRIBUTES:
        assert getattr(back, attribute.field) == getattr(context, attribute.field), attribute.field


def test_the_session_keeps_the_context_in_the_json_form(tmp_path):
    item = full_item("worklist")
    item.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    context = StudyContext.from_worklist(item, source_ae="WLM").with_edits(sex="O")
    session = SessionStore(tmp_path).start(context)
    manifest = json.loads((session.folder / "session.json").read_text(encoding="utf-8"))
    assert manifest["context"] == context_to_dict(context)
    assert SessionStore(tmp_path).load(session.folder).context == context
    [summary] = SessionStore(tmp_path).summaries()
    assert summary["context"] == context


def test_the_json_form_reads_what_older_versions_kept():
    older = {"patient_name": "DOE^JANE", "patient_id": "P1", "referenced_studies": [], "charset": ["", "ISO 2022 IR 87"],
             "study_context": True}
    assert context_from_dict(older) == StudyContext(patient_name="DOE^JANE", patient_id="P1",
                                                    charset=("", "ISO 2022 IR 87"))
    assert context_from_dict({"patient_name": "DOE^JANE", "patient_id": "P1"}) == \
        StudyContext(patient_name="DOE^JANE", patient_id="P1")


# -- the same Japanese worklist item by the touch UI's route and the CLI's ---------------------------------------

CONTEXT_KEYWORDS = ["SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                    "PatientSex", "PatientAge", "AccessionNumber", "ReferringPhysicianName", "StudyInstanceUID",
                    "StudyID", "StudyDescription", "ReferencedStudySequence", "RequestAttributesSequence",
                    "PerformedProcedureStepDescription", "Modality"]


def context_part(ds: Dataset) -> dict:
    """The attributes the study context decides (Original Attributes without the source AE and time)."""
    out = {k: ds[k].to_json_dict(None, 0) for k in CONTEXT_KEYWORDS if k in ds}
    for item in ds.get("OriginalAttributesSequence", ()):
        out["OriginalAttributes"] = [item.ModifiedAttributesSequence[0].to_json_dict(), item.ModifyingSystem,
                                     item.ReasonForTheAttributeModification]
    return out


def ui_route(tmp_path, peer, photo, edits: dict) -> tuple[Dataset, StudyContext]:
    """What the touch UI does: the worklist through its services, the confirmed context into a session
    (persisted, reopened), the session's objects built as Send builds them."""
    from drivers.file_reader import load_file
    from kiosk.config import parse_config
    from kiosk.dicomize import BuildOptions
    from kiosk.station import FolderOutput, Station
    from kiosk.ui.services import Services

    config = parse_config({"worklist": {"ae_title": peer.aet, "host": "127.0.0.1", "port": peer.port,
                                        "station_ae_title": ""}})
    services = Services(config)
    [context] = [c for c in services.worklist(date="") if c.patient_id == "PID087"]
    context = context.with_edits(**edits)
    store = SessionStore(tmp_path / "sessions")
    options = BuildOptions.from_config(config)
    station = Station.start(store, context, options)
    for capture in load_file(photo):
        station.add(capture)
    station = Station.resume(store.load(station.session.folder), options)  # the context as the store kept it
    (tmp_path / "ui").mkdir()
    output = FolderOutput(tmp_path / "ui")
    station.send([output])
    [path] = output.files
    return pydicom.dcmread(path), context


def cli_route(tmp_path, peer, photo, capsys, command: str, edits: dict) -> Dataset:
    """`kiosk worklist --json` saved to a file, then `kiosk convert`/`kiosk acquire --worklist-item`."""
    assert main(["worklist", "--server", f"{peer.aet}@127.0.0.1:{peer.port}", "--patient-id", "PID087", "--station-aet", "",
                 "--date", "any", "--json"]) == 0
    item = tmp_path / "item.json"
    item.write_text(capsys.readouterr().out, encoding="utf-8")
    out = tmp_path / command
    typed = [arg for key, value in edits.items() for arg in (f"--{key.replace('_', '-')}", value)]
    if command == "convert":
        args = ["convert", str(photo), "-o", str(out)]
    else:
        args = ["acquire", "--source", f"file:{photo}", "-o", str(out)]
    assert main([*args, "--worklist-item", str(item), *typed]) == 0
    [made] = list(out.rglob("*.dcm"))
    return pydicom.dcmread(made)


@pytest.mark.parametrize("edits", [{}, {"patient_name": "Yamada^Tarou=山田^太郎=やまだ^たろう^様"}],
                         ids=["as-scheduled", "name-edited"])
@pytest.mark.parametrize("command", ["convert", "acquire"])
@pytest.mark.parametrize("server", ["wlmscpfs", "orthanc"])
def test_ui_and_cli_routes_give_the_same_japanese_objects(request, tmp_path, capsys, server, command, edits):
    peer = request.getfixturevalue(server)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(photo)
    ui, context = ui_route(tmp_path, peer, photo, edits)
    cli = cli_route(tmp_path, peer, photo, capsys, command, edits)
    # The objects carry the character set the worklist answered in (it holds the name): wlmscpfs answers
    # in the item's own ISO 2022 IR 87, Orthanc converts its answers to UTF-8.
    answered = context.charset if isinstance(context.charset, str) else list(context.charset)
    assert answered == {"wlmscpfs": ["", "ISO 2022 IR 87"], "orthanc": "ISO_IR 192"}[server]
    assert ui.SpecificCharacterSet == answered
    assert cli.SpecificCharacterSet == ui.SpecificCharacterSet
    assert context_part(cli) == context_part(ui)
    assert ("OriginalAttributesSequence" in ui) == bool(edits)


def test_the_queries_ask_for_every_row_the_table_reads():
    from kiosk.net.query import StudyQuery, build_identifier as study_identifier
    from kiosk.net.worklist import WorklistQuery, build_identifier as worklist_identifier

    for column, identifier in (("worklist", worklist_identifier(WorklistQuery())),
                               ("query", study_identifier(StudyQuery()))):
        for attribute in ATTRIBUTES:
            path = getattr(attribute, column)
            if not path:
                continue
            *outer, keyword = path.split(">")
            holder = identifier
            for sequence in outer:
                holder = holder[sequence].value[0]
            assert keyword in holder, f"the {column} query does not ask for {path} ({attribute.field})"


def test_the_conformance_statement_lists_the_table():
    """docs/objects.md "Patient and order attributes" says what ATTRIBUTES says, row for row."""
    text = (ROOT / "docs" / "objects.md").read_text(encoding="utf-8")
    section = text.split("### Patient and order attributes", 1)[1].split("\n#", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Attribute")]
    documented = [(keyword, module.lower(), kind.split()[0], request, performed,
                   worklist.replace("SPS > ", "ScheduledProcedureStepSequence>"), query, edit == "yes")
                  for _, keyword, _, module, kind, request, performed, worklist, query, edit in rows]
    assert documented == [(a.keyword, a.module, a.type, a.request, a.performed, a.worklist, a.query, a.tracked)
                          for a in ATTRIBUTES]


@pytest.mark.parametrize("context", [[], "DOE^JANE", {"referenced_studies": [{"sop_class_uid": SC_STUDY}]}],
                         ids=["list", "string", "reference-without-instance"])
def test_a_damaged_context_in_a_manifest_is_a_damaged_session(tmp_path, context):
    from kiosk.errors import KioskError

    session = SessionStore(tmp_path).start(StudyContext(patient_name="DOE^JANE", patient_id="P1"))
    manifest = session.folder / "session.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text(encoding="utf-8")), "context": context}))
    with pytest.raises(KioskError, match="is damaged"):
        SessionStore(tmp_path).load(session.folder)
    assert SessionStore(tmp_path).summaries()[0]["state"] == "damaged"
