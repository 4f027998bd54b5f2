"""Logging: stderr for the person at the terminal, a rotating file for support.

The ``pynetdicom`` logger stays at WARNING unless ``--debug``: at INFO it logs
whole identifiers, patient names included. Our own INFO messages never name
patients (use IDs and UIDs).
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FILENAME = "kiosk.log"


FILE_ONLY = {"file_only": True}


class _ConsoleFormatter(logging.Formatter):
    """One line per record: tracebacks belong in the log file, not on a user's screen."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        return self.formatMessage(record)


def log_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("kiosk", appauthor=False))


def setup_logging(debug: bool = False, verbose: bool = False, to_file: bool = True) -> Path | None:
    """Configure the root logger; return the log file path if one is written."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)

    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s") if debug else _ConsoleFormatter())
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    root.addHandler(console)

    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("PIL").setLevel(logging.INFO if debug else logging.WARNING)
    # pypdf warns about every repair it makes to a PDF being checked (drivers/files.py).
    logging.getLogger("pypdf").setLevel(logging.INFO if debug else logging.ERROR)

    if not to_file:
        return None
    path = log_dir() / LOG_FILENAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=5, encoding="utf-8")
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write the log file %s (%s); logging to stderr only", path, exc.strerror)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    root.addHandler(handler)
    return path
