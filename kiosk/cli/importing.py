"""``kiosk import PATH --to NODE [--wait] (--worklist-item F | --patient-id ID --patient-name NAME)``:
a patient's CD or USB stick imported under the local patient (IHE RAD IRWF.b Importer).

The medium is read (its DICOMDIR, else its files), the chosen studies or series (``--study``,
``--series``; default: everything) are reconciled to the local patient and queued in the outbox.
Prints whose images they are (the medium's patient, the local one) before queueing, then what was
queued, skipped and could not be imported; exit 1 when some files could not be imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="import a patient's CD or USB stick under the local patient (reconciled) "
                                           "and queue it for the archive")
    parser.add_argument("path", metavar="PATH", help="the medium: its mount point or a folder holding a DICOMDIR or "
                                                    "DICOM files")
    parser.add_argument("--to", action="append", required=True, metavar="NODE",
                        help="a configured destination or AET@host:port; repeatable")
    parser.add_argument("--study", action="append", default=[], metavar="UID",
                        help="import this study of the medium (repeatable; default: every study)")
    parser.add_argument("--series", action="append", default=[], metavar="UID",
                        help="import this series of the medium (repeatable)")
    parser.add_argument("--commit", action="store_true", help="ask DICOM destinations for storage commitment")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every job is delivered or failed (delivers itself if no 'kiosk outbox run' "
                             "is running)")
    group = parser.add_argument_group("the local patient (a worklist item: a scheduled import)")
    group.add_argument("--worklist-item", metavar="FILE.json",
                       help="the worklist item (DICOM JSON, as 'kiosk worklist --json' prints) the import fulfils")
    group.add_argument("--patient-id", metavar="ID")
    group.add_argument("--patient-name", metavar="NAME", help="Family^Given")
    group.add_argument("--issuer", metavar="ISSUER", help="Issuer of Patient ID of the local patient ID")
    group.add_argument("--birth-date", metavar="YYYYMMDD")
    group.add_argument("--sex", metavar="M|F|O")
    group.add_argument("--accession", metavar="NUMBER", help="the local accession number (default: the worklist "
                                                             "item's, else empty)")
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Config) -> int:
    from kiosk.cli.send import claim_delivery, follow, parse_destinations, print_queued
    from kiosk.cli.study_options import study_from_args
    from kiosk.display import printable
    from kiosk.errors import KioskError, UsageError
    from kiosk.media.importer import import_media
    from kiosk.media.reader import read_medium
    from kiosk.outbox import Outbox
    from kiosk.station import Station

    if not args.worklist_item and not (args.patient_id and args.patient_name):
        raise UsageError("whose images are these? name the local patient",
                         "give --worklist-item FILE.json, or --patient-id ID and --patient-name NAME")
    context = study_from_args(args, config)
    destinations, commitment = parse_destinations(config, args.to, args.commit)
    medium = read_medium(Path(args.path))
    chosen = medium.chosen(args.study, args.series)
    found = {st.uid for _, st, _ in chosen} | {se.uid for _, _, se in chosen}
    unknown = [uid for uid in (*args.study, *args.series) if uid not in found]
    if unknown:
        raise UsageError(f"the medium holds no study or series {', '.join(unknown)}",
                         f"see the studies with 'kiosk media list {args.path}'")
    if not chosen and not medium.problems:
        raise KioskError(f"{args.path} holds no DICOM images", "insert the patient's CD or name the folder holding it")
    _show_whose(medium, chosen, context, bool(args.worklist_item))
    outbox = Outbox.from_config(config)
    delivery = claim_delivery(outbox, config) if args.wait else None
    station = Station()
    line = _Progress()
    try:
        if delivery is not None:
            delivery.start()  # delivery starts on the first chunk while the rest is read
        result = import_media(config, medium, chosen, context, destinations, scheduled=bool(args.worklist_item),
                              progress=line, commitment=commitment, station=station, outbox=outbox)
        line.close()
        failed = [*medium.problems, *result.failed]
        for warning in result.warnings:
            print(f"kiosk: warning: {warning}", file=sys.stderr)
        for instance, why in result.skipped:
            print(printable(f"skipped  {instance.path}: {why}"))
        for problem in failed:
            print(printable(f"FAILED   {problem.path}: {problem.problem}"))
        print(f"imported {result.queued} instance(s), skipped {len(result.skipped)}, failed {len(failed)}"
              + (f", not read {result.not_read}" if result.not_read else ""))
        if result.stopped:
            print(f"kiosk: error: the import stopped: {result.stopped}; what was read is queued", file=sys.stderr)
            print("kiosk: insert the medium again and import it again: what is already on the archive is skipped",
                  file=sys.stderr)
        if result.jobs:
            print_queued(result.jobs, commitment)
        code = follow(outbox, station, args.wait)
        return max(code, 1 if failed or result.stopped else 0)
    except BaseException:
        station.abandon()  # what was queued stays queued
        raise
    finally:
        line.close()
        if delivery is not None:
            delivery.stop()
        outbox.close()


def _show_whose(medium, chosen, context, scheduled: bool) -> None:  # noqa: ANN001 - Medium, list, StudyContext
    """One line per patient of the medium among the chosen series, one for the local patient."""
    from kiosk.display import printable

    seen = []
    for patient, _, _ in chosen:
        if patient not in seen:
            seen.append(patient)
    for patient in seen:
        studies = {st.uid for p, st, _ in chosen if p is patient}
        count = sum(len(se.instances) for p, _, se in chosen if p is patient)
        print(printable(f"medium:  {_person(patient.name, patient.patient_id, patient.issuer, patient.birth_date, patient.sex)}"
                   f"; {len(studies)} study(ies), {count} instance(s) chosen"))
    order = f"; worklist item, accession {context.accession or '(none)'}" if scheduled else ""
    print(printable(f"import as: {_person(context.patient_name, context.patient_id, context.issuer, context.birth_date, context.sex)}"
               f"{order}"), flush=True)


def _person(name: str, patient_id: str, issuer: str, birth_date: str, sex: str) -> str:
    return (f"{name or '(no name)'}, ID {patient_id or '(none)'}" + (f" ({issuer})" if issuer else "")
            + (f", born {birth_date}" if birth_date else "") + (f", sex {sex}" if sex else ""))


class _Progress:
    """``importing N/M`` on one terminal line; silent otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            self.shown = True
            print(f"\rimporting {done}/{total} instance(s)\033[K", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)
            self.shown = False
