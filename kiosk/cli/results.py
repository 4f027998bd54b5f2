"""C-FIND results for the terminal: a table that prints as matches stream in, or DICOM JSON.

Values come from another system and reach a terminal: the table passes no
control characters (an ESC starts a terminal command, a CR overwrites the
line). Values declared Latin-1 whose bytes are UTF-8 are warned about on
stderr (and marked in the JSON) until ``--reading`` says which reading to use.
"""

from __future__ import annotations

import argparse
import unicodedata
from typing import Any, Callable, Iterable, Sequence

from kiosk.config import Config, NodeConfig
from kiosk.display import printable

# Marks a JSON item whose character set is in doubt; `kiosk convert --worklist-item` refuses such an item.
DOUBT_KEY = "charset_in_doubt"

# A column: header, fixed width (results stream in, so widths cannot adapt; 0 = the rest), cell.
Column = tuple[str, int, Callable[[Any], str]]


def server_node(config: Config, name: str | None, section: str) -> NodeConfig:
    """The node given, or the configured [worklist]/[query] section."""
    from kiosk.config import resolve_node
    from kiosk.errors import UsageError

    if name:
        return resolve_node(config, name, role="node")
    node = getattr(config, section)
    if node is None:
        raise UsageError(f"no [{section}] node is configured", f"add a [{section}] section, or pass --server AET@host:port")
    return node


def add_reading_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reading", choices=["declared", "utf8"], default=None,
                        help="for values declared Latin-1 whose bytes are UTF-8 (a warning names them): "
                             "use them as declared, or read them as UTF-8")


def pad(value: object, width: int) -> str:
    """Left-justify for a terminal (controls replaced): East Asian wide characters take two columns."""
    text = printable(value)
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - used)


def text(ds: Any, key: str) -> str:
    """An attribute as text; '' when the dataset or the attribute is missing."""
    return "" if ds is None else str(ds.get(key, "") or "")


def field(key: str) -> Callable[[Any], str]:
    return lambda ds: text(ds, key)


def print_matches(matches: Iterable[Any], columns: Sequence[Column], as_json: bool, nothing: str,
                  cut: str, reading: str | None) -> None:
    """Print each match as a table row as it arrives (or all as one JSON array); ``nothing`` if none.

    When the query was cut at its limit (``matches.truncated``), ``cut`` (with
    ``{count}``) follows the table, or goes to stderr under the JSON.
    ``reading`` (declared, utf8 or None: warn) is the operator's choice for
    values declared Latin-1 whose bytes are UTF-8.
    """
    import json
    import sys

    from kiosk.dicomize.charset import misreadings, read_as_utf8
    from kiosk.net.find import to_json

    def row(values: Sequence[str]) -> None:
        print("  ".join(pad(v, width) for v, (_, width, _) in zip(values, columns)).rstrip())

    collected: list[dict] = []
    count = doubtful = 0
    for match in matches:
        count += 1
        doubts = misreadings(match) if reading != "declared" else []
        if doubts and reading == "utf8":
            match, doubts = read_as_utf8(match), []
        for doubt in doubts:
            print(f"kiosk: warning: match {count}: {doubt.keyword} came declared Latin-1 but holds UTF-8 bytes: "
                  f"{doubt.declared!r} as declared, {doubt.utf8!r} read as UTF-8", file=sys.stderr)
        doubtful += bool(doubts)
        if as_json:
            item = to_json(match)
            if doubts:
                item[DOUBT_KEY] = [{"keyword": d.keyword, "declared": d.declared, "utf8": d.utf8} for d in doubts]
            collected.append(item)
            continue
        if count == 1:
            row([header for header, _, _ in columns])
        row([cell(match) for _, _, cell in columns])
    if as_json:
        print(json.dumps(collected, ensure_ascii=False, indent=1))
    elif not count:
        print(nothing)
    if getattr(matches, "truncated", False):
        print(f"kiosk: {cut.format(count=count)}" if as_json else cut.format(count=count),
              file=sys.stderr if as_json else sys.stdout)
    if doubtful:
        print(f"kiosk: {doubtful} match(es) hold text declared Latin-1 whose bytes are UTF-8, shown as declared. "
              "Run again with --reading utf8 to use the UTF-8 reading, or --reading declared to keep the values "
              "as declared; ask the sender's administrator to fix its Specific Character Set", file=sys.stderr)
