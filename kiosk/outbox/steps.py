"""The outbox's queue of performed procedure step messages (MPPS N-CREATE / N-SET), in SQLite.

Messages are kept in ``steps.sqlite`` next to the journal (WAL, synchronous=FULL: a message is on
disk before the step's next one can be queued) and delivered in order per step: a message goes
only once every earlier message of its step was sent, so an N-SET never overtakes its N-CREATE.
States: ``queued``, ``retrying`` (a transient failure; ``next_attempt`` says when), ``sent``,
``failed`` (the RIS refused it, or an earlier message of its step failed: a person looks at it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.private import private_sqlite

QUEUED, RETRYING, SENT, FAILED = "queued", "retrying", "sent", "failed"
N_CREATE, N_SET = "N-CREATE", "N-SET"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    step_uid TEXT NOT NULL,
    action TEXT NOT NULL,
    step_status TEXT NOT NULL,
    label TEXT NOT NULL,
    node TEXT NOT NULL,
    spec TEXT NOT NULL,
    dataset TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    status INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_step ON messages (step_uid, id);
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (state, next_attempt);
"""

# Pending messages with no earlier unsent message of their step.
_FIRST_PENDING = """SELECT id, step_uid, action, step_status, label, node, spec, dataset, state, attempts, next_attempt,
    status, reason, created, updated FROM messages m WHERE m.state IN (?, ?) AND NOT EXISTS (
    SELECT 1 FROM messages e WHERE e.step_uid = m.step_uid AND e.id < m.id AND e.state != ?) ORDER BY id"""
_COLUMNS = "id, step_uid, action, step_status, label, node, spec, dataset, state, attempts, next_attempt, status, " \
           "reason, created, updated"


@dataclass(frozen=True)
class StepMessage:
    """One N-CREATE or N-SET of one step; ``dataset`` in the DICOM JSON model, ``spec`` the node's."""

    id: int
    step_uid: str
    action: str
    step_status: str  # IN PROGRESS, COMPLETED or DISCONTINUED: what the message says of the step
    label: str  # how people know the step (accession, step ID); no patient data
    node: str
    spec: dict[str, Any]
    dataset: dict[str, Any]
    state: str
    attempts: int
    next_attempt: float | None
    status: int | None
    reason: str
    created: float
    updated: float


class StepQueue:
    """The messages in ``path``; all methods are thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # deleted messages hold patient data: overwritten
        with self._lock:
            self._db.executescript(SCHEMA)
        private_sqlite(self.path)  # step messages hold patient data

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, step_uid: str, action: str, step_status: str, label: str, node: str, spec: dict[str, Any],
            dataset: dict[str, Any]) -> int:
        """Queue one message (on disk when this returns); its id."""
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO messages (step_uid, action, step_status, label, node, spec, dataset, state, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (step_uid, action, step_status, label, node, json.dumps(spec), json.dumps(dataset), QUEUED, now, now))
            return int(cursor.lastrowid)

    def due(self, now: float | None = None) -> list[StepMessage]:
        """The messages to send now: each step's first unsent one, when its time has come."""
        now = time.time() if now is None else now
        return [m for m in self._first_pending() if m.next_attempt is None or m.next_attempt <= now]

    def next_due(self) -> float | None:
        """When the next message falls due (now, for a queued one), or None when none waits."""
        times = [m.next_attempt or 0.0 for m in self._first_pending()]
        return min(times) if times else None

    def blocked(self) -> list[StepMessage]:
        """Unsent messages behind a failed message of their step: they can never be sent."""
        rows = self._read(f"SELECT {_COLUMNS} FROM messages m WHERE m.state IN (?, ?) AND EXISTS (SELECT 1 FROM "
                          "messages e WHERE e.step_uid = m.step_uid AND e.id < m.id AND e.state = ?) ORDER BY id",
                          (QUEUED, RETRYING, FAILED))
        return [_message(row) for row in rows]

    def update(self, message_id: int, state: str, status: int | None = None, reason: str = "",
               next_attempt: float | None = None, attempts: int | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE messages SET state = ?, status = ?, reason = ?, next_attempt = ?, "
                             "attempts = COALESCE(?, attempts), updated = ? WHERE id = ?",
                             (state, status, reason, next_attempt, attempts, time.time(), message_id))

    def messages(self, step_uid: str | None = None, limit: int = 200) -> list[StepMessage]:
        """The latest messages (of one step), newest last."""
        where, params = ("WHERE step_uid = ?", (step_uid,)) if step_uid else ("", ())
        rows = self._read(f"SELECT {_COLUMNS} FROM messages {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_message(row) for row in reversed(rows)]

    def forget_sent(self, before: float) -> int:
        """Delete the steps every message of which was sent, the last before ``before``; how many messages
        went. A step with a message unsent or failed keeps all of them (a person may need them)."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM messages WHERE step_uid IN (SELECT step_uid FROM messages GROUP BY step_uid "
                "HAVING SUM(state != ?) = 0 AND MAX(updated) < ?)", (SENT, before))
            return cursor.rowcount

    def compact(self) -> None:
        """Rewrite the file without its free pages."""
        with self._lock:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _first_pending(self) -> list[StepMessage]:
        return [_message(row) for row in self._read(_FIRST_PENDING, (QUEUED, RETRYING, SENT))]

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


def _message(row: tuple) -> StepMessage:
    values = list(row)
    values[6], values[7] = json.loads(values[6]), json.loads(values[7])
    return StepMessage(*values)
