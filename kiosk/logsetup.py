"""Logging: stderr for the person at the terminal, a rotating file for support.

The ``pynetdicom`` logger stays at WARNING unless ``--debug``: at INFO it logs
whole identifiers, patient names included. Our own INFO messages never name
patients (use IDs and UIDs). Library warnings (``warnings.warn``) come through
logging too, and unless ``--debug`` the quoted values in them and in pydicom's
messages are masked: they are the offending element values ("Invalid value
for VR DA: '19801340'"). The log file is 0600 in a 0700 folder.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import warnings
from pathlib import Path
from typing import TextIO

from kiosk.private import private_dir, private_opener

LOG_FILENAME = "kiosk.log"
MASK = "<masked>"

# Loggers whose messages may quote element values: pydicom's own, and warnings.warn from any library.
MASKED_LOGGERS = ("pydicom", "py.warnings")
_QUOTED = re.compile(r"""[bB]?(['"])(?:\\.|(?!\1).)*\1""")


FILE_ONLY = {"file_only": True}


class _ConsoleFormatter(logging.Formatter):
    """One line per record: tracebacks belong in the log file, not on a user's screen."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        return self.formatMessage(record)


class _PrivateFileHandler(logging.handlers.RotatingFileHandler):
    """The rotating log file, each generation created 0600 (it holds patient IDs and UIDs)."""

    def _open(self) -> TextIO:  # the one place FileHandler opens its file (again after each rollover)
        return self._builtin_open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,
                                  opener=private_opener)


def mask_values(text: str) -> str:
    """``text`` with every quoted value (``'...'``, ``"..."``, ``b'...'``) replaced by ``<masked>``."""
    return _QUOTED.sub(MASK, text)


def _mask_library_values(record: logging.LogRecord) -> bool:
    if any(record.name == name or record.name.startswith(name + ".") for name in MASKED_LOGGERS):
        record.msg, record.args = mask_values(record.getMessage()), None
    return True


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    """``warnings.showwarning``: one log record instead of raw text on stderr."""
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


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

    warnings.showwarning = _log_warning
    # pydicom logs each of its warnings on the "pydicom" logger as well: keep that one copy.
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    if not debug:
        console.addFilter(_mask_library_values)

    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("PIL").setLevel(logging.INFO if debug else logging.WARNING)
    # pypdf warns about every repair it makes to a PDF being checked (drivers/file_reader.py).
    logging.getLogger("pypdf").setLevel(logging.INFO if debug else logging.ERROR)

    if not to_file:
        return None
    path = log_dir() / LOG_FILENAME
    try:
        private_dir(path.parent)
        handler = _PrivateFileHandler(path, maxBytes=5_000_000, backupCount=5, encoding="utf-8")
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write the log file %s (%s); logging to stderr only", path, exc.strerror)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        handler.addFilter(_mask_library_values)
    root.addHandler(handler)
    return path
