"""``kiosk media list``: what a patient's CD or USB stick holds (docs/media.md).

A group of subcommands (``kiosk media ACTION``); each action registers its own parser in ``register``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.config import Config
from kiosk.display import printable


def register(sub: argparse._SubParsersAction) -> None:
    from kiosk.cli.media_export import register_export

    parser = sub.add_parser("media", help="read patients' CDs and USB sticks; write PDI media")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="patients, studies and series on a medium, and the files that cannot "
                                 "be imported (exit code 1 if there are any)")
    listing.add_argument("path", type=Path, metavar="PATH", help="the medium's folder, e.g. /media/$USER/CDROM")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list, needs_config=False)
    register_export(actions)


def run_list(args: argparse.Namespace, _config: Config | None) -> int:
    from kiosk.media.reader import read_medium

    show_progress = sys.stderr.isatty() and not args.json
    try:
        medium = read_medium(args.path, progress=_progress if show_progress else None)
    finally:
        if show_progress:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(medium.to_json(), indent=2, ensure_ascii=False))
    else:
        for line in describe(medium):
            print(line)
    return 1 if medium.problems else 0


def describe(medium) -> list[str]:
    """The listing a person reads: patients (as the medium names them), studies, series, then the problems."""
    studies = list(medium.studies())
    instances = sum(len(study.instances) for _, study in studies)
    how = "its DICOMDIR" if medium.has_dicomdir else "a search of its folders (no DICOMDIR)"
    lines = [f"{printable(medium.root)} ({printable(medium.label)}), read through {how}: "
             f"{_count(len(medium.patients), 'patient')}, {_count(len(studies), 'study', 'studies')}, "
             f"{_count(instances, 'instance')}"]
    for patient in medium.patients:
        issuer = f" (issuer {printable(patient.issuer)})" if patient.issuer else ""
        born = f", born {_date(patient.birth_date)}" if patient.birth_date else ""
        sex = f", {printable(patient.sex)}" if patient.sex else ""
        lines += ["", f"Patient {printable(patient.name) or '(no name)'}, ID {printable(patient.patient_id) or '(none)'}"
                      f"{issuer}{born}{sex}"]
        for study in patient.studies:
            accession = f", accession {printable(study.accession)}" if study.accession else ""
            lines.append(f"  Study {_date(study.date) or '(no date)'}  {printable(study.description) or '(no description)'}"
                         f"  {', '.join(printable(m) for m in study.modalities) or '-'}  "
                         f"{_count(len(study.series), 'series', 'series')}, {_count(len(study.instances), 'instance')}, "
                         f"{_size(study.size)}{accession}")
            for series in study.series:
                number = "?" if series.number is None else str(series.number)
                lines.append(f"    Series {number:>3}  {printable(series.modality) or '-':<6}  "
                             f"{printable(series.description) or '(no description)'}  "
                             f"{_count(len(series.instances), 'instance')}")
    if medium.problems:
        lines += ["", f"{_count(len(medium.problems), 'problem')}: these files are not imported"]
        for problem in medium.problems:
            lines.append(f"  {printable(medium.relative(problem.path))}: {printable(problem.problem)}")
            if problem.hint:
                lines.append(f"    -> {printable(problem.hint)}")
    if medium.other_files:
        lines += ["", f"{_count(medium.other_files, 'other file')} (not DICOM: a viewer, README ...) ignored"]
    return lines


def _progress(count: int) -> None:
    print(f"\rreading the medium: {count} files", end="", file=sys.stderr, flush=True)


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else printable(value)


def _size(size: int) -> str:
    value, unit = float(size), 0
    while value >= 1000 and unit < 3:
        value, unit = value / 1000, unit + 1
    return f"{size} bytes" if unit == 0 else f"{value:.1f} {('KB', 'MB', 'GB')[unit - 1]}"
