"""The last worklist answer, kept on disk: the front desk keeps working while the worklist server is down.

One file (owner only, next to the sessions, which hold patient data already) keeps the items of
the last successful query with the query they answered and when. ``load`` gives them back only
for the same query, so an outage never shows yesterday's list as today's without saying so: the
caller shows their age and that the list is offline.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.private import private_dir, write_private

log = logging.getLogger(__name__)

NAME = "worklist-cache.json"


@dataclass(frozen=True)
class CachedWorklist:
    """Items (pydicom Datasets) as the worklist answered ``query`` at ``saved`` (time.time())."""

    query: str
    saved: float
    items: list[Any]


def save(folder: Path, query: str, items: list[Any]) -> None:
    """Keep ``items`` (pydicom Datasets) as the answer to ``query``; a failure to write is logged, not raised."""
    data = {"query": query, "saved": time.time(), "items": [ds.to_json_dict() for ds in items]}
    try:
        private_dir(folder)
        write_private(folder / NAME, json.dumps(data, ensure_ascii=False).encode())
    except OSError as exc:
        log.warning("the worklist copy for outages could not be written (%s)", exc.strerror or exc)


def forget(folder: Path) -> bool:
    """Delete the kept answer (``kiosk outbox purge``); whether there was one."""
    try:
        (folder / NAME).unlink()
    except FileNotFoundError:
        return False
    return True


def load(folder: Path, query: str) -> CachedWorklist | None:
    """The kept answer to ``query``, or None (none kept, another query's, or unreadable)."""
    from pydicom.dataset import Dataset

    try:
        data = json.loads((folder / NAME).read_text(encoding="utf-8"))
        if data.get("query") != query:
            return None
        return CachedWorklist(query, float(data["saved"]), [Dataset.from_json(item) for item in data["items"]])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the worklist copy for outages cannot be read (%s); it is ignored", exc)
        return None
