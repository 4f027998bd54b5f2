"""C-FIND results for the terminal: a table that prints as matches stream in, or DICOM JSON."""

from __future__ import annotations

import unicodedata
from typing import Any, Callable, Iterable, Sequence

from kiosk.config import Config, NodeConfig

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


def pad(value: object, width: int) -> str:
    """Left-justify for a terminal: East Asian wide characters take two columns."""
    text = str(value)
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - used)


def text(ds: Any, key: str) -> str:
    """An attribute as text; '' when the dataset or the attribute is missing."""
    return "" if ds is None else str(ds.get(key, "") or "")


def field(key: str) -> Callable[[Any], str]:
    return lambda ds: text(ds, key)


def print_matches(matches: Iterable[Any], columns: Sequence[Column], as_json: bool, nothing: str,
                  cut: str) -> None:
    """Print each match as a table row as it arrives (or all as one JSON array); ``nothing`` if none.

    When the query was cut at its limit (``matches.truncated``), ``cut`` (with
    ``{count}``) follows the table, or goes to stderr under the JSON.
    """
    import json
    import sys

    from kiosk.net.find import to_json

    def row(values: Sequence[str]) -> None:
        print("  ".join(pad(v, width) for v, (_, width, _) in zip(values, columns)).rstrip())

    collected: list[dict] = []
    count = 0
    for match in matches:
        count += 1
        if as_json:
            collected.append(to_json(match))
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
