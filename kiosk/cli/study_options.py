"""Patient/study command-line options shared by ``kiosk convert`` and ``kiosk acquire``.

``add_study_options(parser)`` adds them; ``study_from_args`` makes the
validated ``StudyContext`` (from ``--worklist-item`` and/or the typed values,
edits of worklist data recorded for the Original Attributes Sequence), and
``options_from_args`` the ``BuildOptions`` parts (series description,
modality, conversion type) with the station settings from the configuration.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from kiosk.cli.results import DOUBT_KEY
from kiosk.study import CONVERSION_TYPES, StudyContext, StudyError

# The typed options, each named for the StudyContext field it sets (--patient-name: patient_name).
_FIELDS = ("patient_name", "patient_id", "issuer", "birth_date", "sex", "accession", "study_description", "study_uid",
           "modality")


def add_study_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("patient and study")
    group.add_argument("--worklist-item", metavar="FILE.json",
                       help="take patient and order from a worklist item in DICOM JSON (as 'kiosk worklist --json' prints)")
    group.add_argument("--patient-name", metavar="NAME", help="Family^Given (ideographic/phonetic groups after '=')")
    group.add_argument("--patient-id", metavar="ID")
    group.add_argument("--birth-date", metavar="YYYYMMDD")
    group.add_argument("--sex", metavar="M|F|O")
    group.add_argument("--accession", metavar="NUMBER")
    group.add_argument("--study-description", metavar="TEXT")
    group.add_argument("--series-description", metavar="TEXT")
    group.add_argument("--study-uid", metavar="UID", help="add to this study (default: the worklist's, else a new one)")
    group.add_argument("--modality", metavar="CODE", help="default: the worklist item's, else OT; DOC for PDFs")
    group.add_argument("--operator", metavar="NAME", help="Operators' Name (Family^Given) written into the series")
    group.add_argument("--body-part", metavar="TERM", help="Body Part Examined, e.g. CHEST, ABDOMEN, STOMACH")
    group.add_argument("--conversion-type", metavar="CODE", choices=CONVERSION_TYPES,
                       help=f"one of {', '.join(CONVERSION_TYPES)} (default: from the source)")


def study_from_args(args: argparse.Namespace, config: Any = None) -> StudyContext:
    """The study context the options describe; raises ``StudyError`` (one line per bad field)."""
    typed = {field: getattr(args, field, None) for field in _FIELDS}
    if getattr(args, "worklist_item", None):
        source = args.worklist_item
        context = StudyContext.from_worklist(read_worklist_item(source))
        context = context.with_edits(**typed)
    else:
        source = ""
        context = StudyContext(**{k: v for k, v in typed.items() if v is not None}).normalized()
    context.validate(source)
    return context


def options_from_args(args: argparse.Namespace, config: Any = None, **changes: Any):
    """``BuildOptions`` from the study options, the configuration and ``changes``."""
    from kiosk.dicomize import BuildOptions

    return BuildOptions.from_config(
        config,
        series_description=getattr(args, "series_description", None),
        modality=(getattr(args, "modality", None) or "").upper() or None,
        conversion_type=getattr(args, "conversion_type", None),
        operators_name=getattr(args, "operator", None),
        body_part=(getattr(args, "body_part", None) or "").upper() or None,
        **changes,
    )


class WorklistItemError(StudyError):
    """A ``--worklist-item`` file that cannot be used: one line naming the file and the problem."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__([problem], path)
        self.hint = "save one worklist item as DICOM JSON, e.g. from 'kiosk worklist --json'"


# A worklist item that carries none of these has nothing to take patient and order from.
_ITEM_KEYWORDS = ("PatientID", "PatientName", "AccessionNumber", "StudyInstanceUID",
                  "ScheduledProcedureStepSequence", "RequestedProcedureID")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


def _not_dicom_json(data: dict) -> str | None:
    """Why ``data`` is not a DICOM JSON dataset (PS3.18 F.2: 8-hex-digit tags -> objects with a "vr"), or None."""
    for key, value in data.items():
        if not _TAG.match(str(key)):
            return f'key "{key}" is not a tag such as "00100020"'
        if not isinstance(value, dict) or "vr" not in value:
            return f'the value of {key} is not an object with a "vr"'
    return None


def read_worklist_item(path: str) -> Any:
    """A pydicom Dataset from a DICOM JSON object (PS3.18 F.2) or a one-element array of them.

    Raises ``WorklistItemError`` for anything else: missing, not JSON, not DICOM
    JSON, or an item with no patient or order attributes at all.
    """
    from pydicom.dataset import Dataset

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorklistItemError(path, "does not exist") from None
    except IsADirectoryError:
        raise WorklistItemError(path, "is a folder, not a JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorklistItemError(path, f"cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise WorklistItemError(path, f"is not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, list):
        if len(data) != 1:
            raise WorklistItemError(path, f"holds {len(data)} worklist items; save exactly one")
        data = data[0]
    if not isinstance(data, dict):
        kind = {str: "string", int: "number", float: "number", bool: "true/false"}.get(type(data), "null")
        raise WorklistItemError(path, f"is not a DICOM JSON object (it holds a JSON {kind})")
    if not data:
        raise WorklistItemError(path, "is an empty JSON object, not a worklist item")
    if DOUBT_KEY in data:
        doubts = "; ".join(f"{d.get('keyword')}: {d.get('declared')!r} as declared, {d.get('utf8')!r} as UTF-8"
                           for d in data[DOUBT_KEY] if isinstance(d, dict))
        error = WorklistItemError(path, f"holds text declared Latin-1 whose bytes are UTF-8 ({doubts})")
        error.hint = ("choose the reading: save the item again with 'kiosk worklist --json --reading utf8' "
                      "(or --reading declared)")
        raise error
    problem = _not_dicom_json(data)
    if problem:
        raise WorklistItemError(path, f"is not valid DICOM JSON: {problem}")
    try:
        ds = Dataset.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WorklistItemError(path, f"is not valid DICOM JSON ({exc})") from None
    if not any(ds.get(keyword) for keyword in _ITEM_KEYWORDS):
        raise WorklistItemError(path, "is DICOM JSON but no worklist item: it has no Patient ID, Patient's Name, "
                                      "Accession Number or Scheduled Procedure Step")
    return ds
