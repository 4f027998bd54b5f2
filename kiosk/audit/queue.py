"""The local copy of the audit trail: every message, in SQLite, before anything else happens to it.

``audit.sqlite`` (WAL, synchronous=FULL, owner only: the messages name patients) in the audit folder
of the user data dir. Each row is ``waiting`` until the sender delivered it, then ``sent``; rows are
sent in id order. Sent rows older than ``keep_days`` are deleted; waiting ones are never deleted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kiosk.private import private_dir, private_sqlite

WAITING, SENT = "waiting", "sent"
FILENAME = "audit.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    event TEXT NOT NULL,
    event_type TEXT NOT NULL,
    outcome INTEGER NOT NULL,
    summary TEXT NOT NULL,
    frame BLOB NOT NULL,
    state TEXT NOT NULL,
    sent REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (state, id);
"""
_COLUMNS = "id, created, event, event_type, outcome, summary, frame, state, sent, attempts, reason"


def default_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("kiosk", appauthor=False)) / "audit"


@dataclass(frozen=True)
class Entry:
    """One queued message; ``frame`` the syslog message as it goes on the wire (without TLS framing)."""

    id: int
    created: float
    event: str
    event_type: str
    outcome: int
    summary: str
    frame: bytes
    state: str
    sent: float | None
    attempts: int
    reason: str


class AuditQueue:
    """The queue in ``folder``; thread-safe, and safe to share between processes (SQLite locking)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        private_dir(self.folder)
        self.path = self.folder / FILENAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._db.executescript(SCHEMA)
        private_sqlite(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, event: str, event_type: str, outcome: int, summary: str, frame: bytes,
            created: float | None = None) -> int:
        """Store one message (on disk when this returns); its id."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO messages (created, event, event_type, outcome, summary, frame, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time() if created is None else created, event, event_type, outcome, summary, frame, WAITING))
        private_sqlite(self.path)  # the WAL and shm files appear with the first write
        return int(cursor.lastrowid)

    def waiting(self, limit: int = 100) -> list[Entry]:
        """The oldest messages not yet delivered, in order."""
        return self._select("WHERE state = ? ORDER BY id LIMIT ?", (WAITING, limit))

    def mark_sent(self, ids: list[int]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany("UPDATE messages SET state = ?, sent = ?, reason = '' WHERE id = ?",
                                 [(SENT, now, i) for i in ids])

    def mark_failed(self, ids: list[int], reason: str) -> None:
        """A delivery attempt of these failed: they stay waiting, with the reason."""
        with self._lock:
            self._db.executemany("UPDATE messages SET attempts = attempts + 1, reason = ? WHERE id = ?",
                                 [(reason, i) for i in ids])

    def entries(self, since: float = 0.0, limit: int | None = None) -> list[Entry]:
        """Messages created since ``since``, oldest first (the last ``limit`` of them)."""
        if limit is None:
            return self._select("WHERE created >= ? ORDER BY id", (since,))
        rows = self._select("WHERE created >= ? ORDER BY id DESC LIMIT ?", (since, limit))
        return rows[::-1]

    def delete_sent_before(self, when: float) -> int:
        """Delete delivered messages created before ``when``; how many."""
        with self._lock:
            return self._db.execute("DELETE FROM messages WHERE state = ? AND created < ?", (SENT, when)).rowcount

    def _select(self, where: str, params: tuple) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM messages {where}", params).fetchall()
        return [Entry(*row) for row in rows]
