"""``kiosk query``: find a study (or its series) on the PACS, to add captures to it."""

from __future__ import annotations

import argparse

from kiosk.cli.results import add_reading_option
from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("query", help="find studies or series on a PACS (Study Root C-FIND)")
    parser.add_argument("--server", metavar="NODE", help="query node (default: [query]) or AET@host:port")
    parser.add_argument("--level", choices=["study", "series"], default="study")
    parser.add_argument("--patient-name", default="", metavar="NAME", help="e.g. 'DOE^J*' (wildcards * and ?)")
    parser.add_argument("--patient-id", default="", metavar="ID")
    parser.add_argument("--accession", default="", metavar="NUMBER")
    parser.add_argument("--date", default="", help="YYYYMMDD, YYYYMMDD-YYYYMMDD or today (default: any)")
    parser.add_argument("--modality", default="")
    parser.add_argument("--study-uid", default="", metavar="UID", help="the study (required for --level series)")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="cancel after N matches (default: max_results)")
    parser.add_argument("--json", action="store_true", help="print a JSON array of DICOM JSON objects (PS3.18 F.2)")
    add_reading_option(parser)
    parser.set_defaults(run=run, needs_config=True)


CUT = ("only the first {count} matches are shown: the PACS has more (the limit is --max, by default max_results "
       "of [query]). Narrow the search with --patient-name, --patient-id, --accession, --date or --modality, "
       "or raise --max (0: no limit)")


def run(args: argparse.Namespace, config: Config) -> int:
    from kiosk.cli.results import field, print_matches, server_node
    from kiosk.net.query import StudyQuery, find_studies

    node = server_node(config, args.server, "query")
    query = StudyQuery(args.level.upper(), args.patient_name, args.patient_id, args.accession, args.date,
                       args.modality, args.study_uid)
    limit = node.max_results if args.max is None else args.max
    if args.level == "study":
        columns = [("Patient name", 28, field("PatientName")), ("ID", 12, field("PatientID")),
                   ("Date", 8, field("StudyDate")), ("Accession", 12, field("AccessionNumber")),
                   ("Mods", 8, field("ModalitiesInStudy")), ("Description", 30, field("StudyDescription")),
                   ("Study Instance UID", 0, field("StudyInstanceUID"))]
    else:
        columns = [("Mod", 4, field("Modality")), ("No", 5, field("SeriesNumber")), ("Date", 8, field("SeriesDate")),
                   ("Images", 6, field("NumberOfSeriesRelatedInstances")),
                   ("Description", 30, field("SeriesDescription")), ("Series Instance UID", 0, field("SeriesInstanceUID"))]
    nothing = f"no matching {'studies' if args.level == 'study' else 'series'}"
    print_matches(find_studies(node, config.local, query, limit=limit), columns, args.json, nothing, CUT,
                  args.reading)
    return 0
