"""``kiosk query``: find a study (or its series) on the PACS, to add captures to it."""

from __future__ import annotations

import argparse

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
    parser.set_defaults(run=run, needs_config=True)


STUDY_COLUMNS = [("Patient name", 28), ("ID", 12), ("Date", 8), ("Accession", 12), ("Mods", 8),
                 ("Description", 30), ("Study Instance UID", 0)]
SERIES_COLUMNS = [("Mod", 4), ("No", 5), ("Date", 8), ("Images", 6), ("Description", 30), ("Series Instance UID", 0)]


def run(args: argparse.Namespace, config: Config) -> int:
    import json

    from kiosk.cli.worklist import pad, server_node, text
    from kiosk.net.find import to_json
    from kiosk.net.query import StudyQuery, find_studies

    node = server_node(config, args.server, "query")
    query = StudyQuery(args.level.upper(), args.patient_name, args.patient_id, args.accession, args.date,
                       args.modality, args.study_uid)
    limit = node.max_results if args.max is None else args.max
    columns = STUDY_COLUMNS if args.level == "study" else SERIES_COLUMNS

    def row(values: list[str]) -> None:
        print("  ".join(pad(v, w) for v, (_, w) in zip(values, columns)).rstrip())

    results = []
    for match in find_studies(node, config.local, query, limit=limit):
        results.append(to_json(match) if args.json else None)
        if args.json:
            continue
        if len(results) == 1:
            row([name for name, _ in columns])
        if args.level == "study":
            row([text(match, "PatientName"), text(match, "PatientID"), text(match, "StudyDate"),
                 text(match, "AccessionNumber"), text(match, "ModalitiesInStudy"), text(match, "StudyDescription"),
                 text(match, "StudyInstanceUID")])
        else:
            row([text(match, "Modality"), text(match, "SeriesNumber"), text(match, "SeriesDate"),
                 text(match, "NumberOfSeriesRelatedInstances"), text(match, "SeriesDescription"),
                 text(match, "SeriesInstanceUID")])
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
    elif not results:
        print(f"no matching {'studies' if args.level == 'study' else 'series'}")
    return 0
