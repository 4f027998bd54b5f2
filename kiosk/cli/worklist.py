"""``kiosk worklist``: today's orders from the Modality Worklist, as a table or DICOM JSON."""

from __future__ import annotations

import argparse

from kiosk.cli.results import add_reading_option
from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worklist", help="query the modality worklist (C-FIND)")
    parser.add_argument("--server", metavar="NODE", help="worklist node (default: [worklist]) or AET@host:port")
    parser.add_argument("--patient-name", default="", metavar="NAME", help="e.g. 'DOE^J*' (wildcards * and ?)")
    parser.add_argument("--patient-id", default="", metavar="ID")
    parser.add_argument("--accession", default="", metavar="NUMBER")
    parser.add_argument("--date", default="today", help="today (default), YYYYMMDD, YYYYMMDD-YYYYMMDD, or any")
    parser.add_argument("--modality", default="", help="e.g. OT, XC, DOC")
    parser.add_argument("--time", default="", metavar="HHMM[-HHMM]", help="the step's start time or a range")
    parser.add_argument("--birth-date", default="", metavar="YYYYMMDD", help="the patient's birth date (or a range)")
    parser.add_argument("--sex", default="", metavar="M|F|O")
    parser.add_argument("--referring-physician", default="", metavar="NAME", help="e.g. 'HOUSE^*'")
    parser.add_argument("--procedure", default="", metavar="TEXT",
                        help="Requested Procedure Description, e.g. '*Thorax*'")
    parser.add_argument("--study-uid", default="", metavar="UID")
    parser.add_argument("--station-aet", default=None, metavar="AET",
                        help="Scheduled Station AE Title (default: station_ae_title of [worklist]; '' for any)")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="cancel after N items (default: max_results)")
    parser.add_argument("--json", action="store_true", help="print a JSON array of DICOM JSON objects (PS3.18 F.2)")
    add_reading_option(parser)
    parser.set_defaults(run=run, needs_config=True)


CUT = ("only the first {count} items are shown: the worklist has more (the limit is --max, by default max_results "
       "of [worklist]). Narrow the search with --patient-name, --patient-id, --accession, --date or --modality, "
       "or raise --max (0: no limit)")


def _step(key: str):
    """A cell from the item's first Scheduled Procedure Step."""
    from kiosk.cli.results import text

    return lambda item: text((item.get("ScheduledProcedureStepSequence") or [None])[0], key)


def run(args: argparse.Namespace, config: Config) -> int:
    from kiosk.cli.results import field, print_matches, server_node
    from kiosk.net.worklist import WorklistQuery, find_worklist

    node = server_node(config, args.server, "worklist")
    query = WorklistQuery(args.patient_name, args.patient_id, args.accession, args.date, args.modality,
                          args.station_aet if args.station_aet is not None else node.station_ae_title,
                          birth_date=args.birth_date, sex=args.sex, referring_physician=args.referring_physician,
                          procedure=args.procedure, study_uid=args.study_uid, time=args.time)
    limit = node.max_results if args.max is None else args.max
    columns = [("Patient name", 28, field("PatientName")), ("ID", 12, field("PatientID")),
               ("Birth", 8, field("PatientBirthDate")), ("Sex", 3, field("PatientSex")),
               ("Accession", 12, field("AccessionNumber")), ("Date", 8, _step("ScheduledProcedureStepStartDate")),
               ("Time", 6, _step("ScheduledProcedureStepStartTime")), ("Mod", 4, _step("Modality")),
               ("Procedure", 0, field("RequestedProcedureDescription"))]
    print_matches(find_worklist(node, config.local, query, limit=limit), columns, args.json,
                  "no matching worklist items", CUT, args.reading)
    return 0
