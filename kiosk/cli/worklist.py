"""``kiosk worklist``: today's orders from the Modality Worklist, as a table or DICOM JSON."""

from __future__ import annotations

import argparse

from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worklist", help="query the modality worklist (C-FIND)")
    parser.add_argument("--server", metavar="NODE", help="worklist node (default: [worklist]) or AET@host:port")
    parser.add_argument("--patient-name", default="", metavar="NAME", help="e.g. 'DOE^J*' (wildcards * and ?)")
    parser.add_argument("--patient-id", default="", metavar="ID")
    parser.add_argument("--accession", default="", metavar="NUMBER")
    parser.add_argument("--date", default="today", help="today (default), YYYYMMDD, YYYYMMDD-YYYYMMDD, or any")
    parser.add_argument("--modality", default="", help="e.g. OT, XC, DOC")
    parser.add_argument("--station-aet", default=None, metavar="AET",
                        help="Scheduled Station AE Title (default: station_ae_title of [worklist]; '' for any)")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="cancel after N items (default: max_results)")
    parser.add_argument("--json", action="store_true", help="print a JSON array of DICOM JSON objects (PS3.18 F.2)")
    parser.set_defaults(run=run, needs_config=True)


def server_node(config: Config, name: str | None, section: str):
    """The node given, or the configured [worklist]/[query] section."""
    from kiosk.config import resolve_node
    from kiosk.errors import UsageError

    if name:
        return resolve_node(config, name, role="node")
    node = getattr(config, section)
    if node is None:
        raise UsageError(f"no [{section}] node is configured", f"add a [{section}] section, or pass --server AET@host:port")
    return node


# Results stream in, so columns have fixed widths (long values are not cut).
COLUMNS = [("Patient name", 28), ("ID", 12), ("Birth", 8), ("Sex", 3), ("Accession", 12), ("Date", 8),
           ("Time", 6), ("Mod", 4), ("Procedure", 0)]


def pad(value: object, width: int) -> str:
    """Left-justify for a terminal: East Asian wide characters take two columns."""
    import unicodedata

    text = str(value)
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - used)


def print_row(values: list[str]) -> None:
    print("  ".join(pad(v, w) for v, (_, w) in zip(values, COLUMNS)).rstrip())


def text(ds, key: str) -> str:  # noqa: ANN001 - a pydicom Dataset or None
    return "" if ds is None else str(ds.get(key, "") or "")


def run(args: argparse.Namespace, config: Config) -> int:
    import json

    from kiosk.net.find import to_json
    from kiosk.net.worklist import WorklistQuery, find_worklist

    node = server_node(config, args.server, "worklist")
    query = WorklistQuery(args.patient_name, args.patient_id, args.accession, args.date, args.modality,
                          args.station_aet if args.station_aet is not None else node.station_ae_title)
    limit = node.max_results if args.max is None else args.max
    items = []
    for item in find_worklist(node, config.local, query, limit=limit):
        items.append(to_json(item) if args.json else None)
        if args.json:
            continue
        if len(items) == 1:
            print_row([name for name, _ in COLUMNS])
        step = (item.get("ScheduledProcedureStepSequence") or [None])[0]
        print_row([text(item, "PatientName"), text(item, "PatientID"), text(item, "PatientBirthDate"),
                   text(item, "PatientSex"), text(item, "AccessionNumber"),
                   text(step, "ScheduledProcedureStepStartDate"), text(step, "ScheduledProcedureStepStartTime"),
                   text(step, "Modality"), text(item, "RequestedProcedureDescription")])
    if args.json:
        print(json.dumps(items, ensure_ascii=False, indent=1))
    elif not items:
        print("no matching worklist items")
    return 0
