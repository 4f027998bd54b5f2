"""The journal: every job's state in SQLite (WAL; accepting commits with synchronous=FULL).

A job is one instance for one destination. States:

- ``queued``: waiting for its destination's worker;
- ``sending``: in an association right now (re-queued if the process dies);
- ``sent``: the destination accepted it (``commitment`` jobs wait here for
  the storage commitment report);
- ``committed``: storage commitment confirmed;
- ``retrying``: a transient failure; ``next_attempt`` says when;
- ``failed``: permanent failure (``status`` code, ``reason``) waiting for a
  person to retry or remove it.

An instance queued with its clip linked (``kiosk.outbox.linked``) has no
SHA-256 until its file is written out (``prepared``); until then its jobs
say so (``Job.preparing``) and are written out before they are sent.

A job delivered as the fallback of a video object (``kiosk.video.fallback``)
keeps that in ``fallback``: the sentence people see, and what tells storage
commitment to ask for the fallback's UID.

One connection per ``Journal``, serialised by a lock, so worker threads can
share it; other processes (``kiosk send`` next to ``kiosk outbox run``) meet
through SQLite's own locking.

A damaged journal raises ``JournalDamagedError`` (never a bare SQLite
error); ``kiosk.outbox.recovery`` rebuilds the jobs from the spool.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from kiosk.errors import KioskError
from kiosk.private import private_sqlite
from kiosk.outbox.spool import SpoolEntry

QUEUED, SENDING, SENT, COMMITTED, RETRYING, FAILED = "queued", "sending", "sent", "committed", "retrying", "failed"
STATES = (QUEUED, SENDING, SENT, COMMITTED, RETRYING, FAILED)
#: States in which a job still needs the worker.
PENDING = (QUEUED, SENDING, RETRYING)

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    spool_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    transfer_syntax TEXT,
    original TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id),
    destination TEXT NOT NULL REFERENCES destinations(name),
    commitment INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    status INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    fallback TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_destination ON jobs (destination, state, next_attempt);
CREATE INDEX IF NOT EXISTS jobs_by_instance ON jobs (instance_id);
"""

# An instance whose jobs are all delivered (committed, or sent without commitment) before a time.
_EXPIRED = """EXISTS (SELECT 1 FROM jobs j WHERE j.instance_id = i.id) AND NOT EXISTS (
    SELECT 1 FROM jobs j WHERE j.instance_id = i.id
    AND NOT ((j.state = ? OR (j.state = ? AND j.commitment = 0)) AND j.updated < ?))"""

# Due jobs of a destination, lowest id first: queued ones (in index order), then
# queued ones left with a time by a dead worker and retrying ones whose time has come.
_CLAIM_QUEUED = "SELECT id, state FROM jobs WHERE destination = ? AND state = ? AND next_attempt IS NULL ORDER BY id LIMIT ?"
_CLAIM_TIMED = ("SELECT id, state FROM jobs WHERE destination = ? AND state = ? AND next_attempt IS NOT NULL "
                "UNION ALL SELECT id, state FROM jobs WHERE destination = ? AND state = ? AND next_attempt <= ? "
                "ORDER BY id LIMIT ?")

_JOB_COLUMNS = """j.id, j.destination, j.commitment, j.state, j.attempts, j.next_attempt, j.status, j.reason,
    j.created, j.updated, i.id, i.sop_instance_uid, i.sop_class_uid, i.spool_name, i.sha256, i.size, i.transfer_syntax,
    i.original, j.fallback"""

#: SQLite's answers for a file that is no (longer a) database.
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
RECOVER_HINT = ("stop the delivery service and the kiosk UI, then run 'kiosk outbox recover': it queues the spool's "
                "images again (a damaged journal is kept aside, not deleted)")


class JournalRecoveryNeeded(KioskError):
    """Nothing may run on this journal until a person runs ``kiosk outbox recover``: exit code 3,
    which the delivery service's unit does not restart on (a restart cannot help)."""

    exit_code = 3


class JournalDamagedError(JournalRecoveryNeeded):
    """The journal file is damaged; its jobs can be rebuilt from the spool (``kiosk outbox recover``)."""


class JournalLostError(JournalRecoveryNeeded):
    """The journal is missing or empty while the spool holds images: nothing may start on a fresh one."""


def journal_present(path: Path) -> bool:
    """Whether ``path`` holds a journal at all (SQLite would take a missing or empty file for a new one)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class Job:
    """One instance for one destination, as stored."""

    id: int
    destination: str
    commitment: bool
    state: str
    attempts: int
    next_attempt: float | None
    status: int | None
    reason: str
    created: float
    updated: float
    instance_id: int
    sop_instance_uid: str
    sop_class_uid: str
    spool_name: str
    sha256: str
    size: int
    transfer_syntax: str | None  # None for jobs journaled before it was recorded
    original: str  # the file the user sent ("" for images captured here, and older jobs)
    fallback: str = ""  # delivered as a video object's fallback: what the entry says of it (else "")

    @property
    def entry(self) -> SpoolEntry:
        return SpoolEntry(self.spool_name, self.sha256, self.size)

    @property
    def preparing(self) -> bool:
        """Its object waits to be written out in the spool before it can be sent (``Outbox.prepare``)."""
        return not self.sha256

    @property
    def awaiting_commitment(self) -> bool:
        return self.state == SENT and self.commitment

    @property
    def done(self) -> bool:
        """Nothing more will happen without a person (or it is delivered)."""
        return self.state in (COMMITTED, FAILED) or (self.state == SENT and not self.commitment)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Update:
    """A state change for one job; ``attempts`` None keeps the count, ``fallback`` None keeps it."""

    job_id: int
    state: str
    status: int | None = None
    reason: str = ""
    next_attempt: float | None = None
    attempts: int | None = None
    fallback: str | None = None


@dataclass(frozen=True)
class Accepted:
    """An instance already in the spool, ready to be journaled."""

    entry: SpoolEntry
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str | None = None
    original: str = ""  # the user's file, for messages
    accepted: float | None = None  # when it was accepted, if not now (jobs rebuilt from the spool)


class Journal:
    """Job states in ``path`` (SQLite). All methods are thread-safe."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """Open (or create) the journal; ``read_only`` also copes with a full disk (see ``_open_frozen``)."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            with _damage_reported(self.path):
                self._open()
        except sqlite3.OperationalError:
            self._db.close()
            if not read_only or not self._open_frozen():
                raise
            return
        except JournalDamagedError:
            self._db.close()
            raise
        private_sqlite(self.path)  # the WAL holds job rows too; the spool folder is 0700 already

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we tell anyone the image is accepted.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # Let the WAL shrink back after checkpoints instead of keeping its peak size.
        self._db.execute("PRAGMA journal_size_limit=1048576")
        # Deleted rows (patient names in the file records' history) are overwritten, not left in free pages.
        self._db.execute("PRAGMA secure_delete=ON")
        with self._write() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(instances)")}
            # Journals from before these columns existed.
            if "transfer_syntax" not in columns:
                db.execute("ALTER TABLE instances ADD COLUMN transfer_syntax TEXT")
            if "original" not in columns:
                db.execute("ALTER TABLE instances ADD COLUMN original TEXT NOT NULL DEFAULT ''")
            if "fallback" not in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}:
                db.execute("ALTER TABLE jobs ADD COLUMN fallback TEXT NOT NULL DEFAULT ''")

    def _open_frozen(self) -> bool:
        """Open the journal as it is on disk, read-only; False if that could miss changes.

        SQLite cannot open a WAL journal without room for its shared-memory
        file (a full disk: "disk I/O error"). When no write-ahead log holds
        changes, the main file is the whole journal and needs no locking.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists() and wal.stat().st_size:
            return False
        self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)
        return True

    def check(self) -> None:
        """Raise ``JournalDamagedError`` unless SQLite finds the whole file sound."""
        problems = [row[0] for row in self._read("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise JournalDamagedError(f"the outbox journal {self.path} is damaged ({problems[0]})", RECOVER_HINT)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable=False`` skips the fsync at commit.

        Only for changes whose loss on power failure is harmless: they are
        redone (a job whose "sending" or "sent" mark is lost is queued again
        and re-sent under the same UID), while the fsync of each commit would
        also flush everything else written to the disk since the last one.
        A later durable commit makes the earlier ones durable too (the WAL is
        written in order).
        """
        with self._lock, _damage_reported(self.path):
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock, _damage_reported(self.path):
            return self._db.execute(sql, params).fetchall()

    # -- adding -----------------------------------------------------------

    def add(self, accepted: Sequence[Accepted], destinations: dict[str, dict[str, Any]],
            commitment: set[str] = frozenset(), only_new: bool = False) -> dict[str, list[int]]:
        """Journal instances for each destination (name -> spec); returns job ids per destination.

        ``commitment`` names the destinations whose jobs wait for storage commitment.
        ``only_new`` skips instances whose spool file the journal already has
        (checked in the same transaction, for jobs rebuilt while others accept).
        """
        now = time.time()
        jobs: dict[str, list[int]] = {name: [] for name in destinations}
        with self._write() as db:
            if only_new:
                known = {row[0] for row in db.execute("SELECT spool_name FROM instances")}
                accepted = [item for item in accepted if item.entry.name not in known]
            for name, spec in destinations.items():
                db.execute("INSERT INTO destinations (name, spec) VALUES (?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec", (name, json.dumps(spec)))
            instances = [(db.execute(
                "INSERT INTO instances (sop_instance_uid, sop_class_uid, spool_name, sha256, size, created, transfer_syntax, "
                "original) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (item.sop_instance_uid, item.sop_class_uid, item.entry.name, item.entry.sha256, item.entry.size,
                 item.accepted or now, item.transfer_syntax, item.original),
            ).lastrowid, item.accepted or now) for item in accepted]
            # Destination by destination, so each one's job numbers are consecutive.
            for name in destinations:
                for instance_id, created in instances:
                    cursor = db.execute(
                        "INSERT INTO jobs (instance_id, destination, commitment, state, created, updated) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (instance_id, name, int(name in commitment), QUEUED, created, now))
                    jobs[name].append(cursor.lastrowid)
        return jobs

    def prepared(self, instance_id: int, sha256: str, size: int) -> None:
        """Record that an instance's spool file is written out (``Job.preparing`` no more)."""
        with self._write() as db:
            db.execute("UPDATE instances SET sha256 = ?, size = ? WHERE id = ?", (sha256, size, instance_id))

    # -- the worker's side ------------------------------------------------

    def claim(self, destination: str, limit: int, now: float | None = None) -> tuple[list[Job], dict[int, str]]:
        """Mark up to ``limit`` due jobs of ``destination`` as sending; returns them and their previous states."""
        now = time.time() if now is None else now
        with self._write(durable=False) as db:
            # Two index walks, not one query with OR: that one sorted every job of the
            # destination, sent ones included, on each claim.
            due = db.execute(_CLAIM_QUEUED, (destination, QUEUED, limit)).fetchall()
            due += db.execute(_CLAIM_TIMED, (destination, QUEUED, destination, RETRYING, now, limit)).fetchall()
            previous = dict(sorted(due)[:limit])
            if not previous:
                return [], {}
            marks = ",".join("?" * len(previous))
            db.execute(f"UPDATE jobs SET state = ?, updated = ? WHERE id IN ({marks})", (SENDING, now, *previous))
        return self.jobs_by_id(list(previous)), previous

    def due_commitments(self, destination: str, limit: int, now: float | None = None) -> list[Job]:
        """Jobs of ``destination`` sent, waiting for storage commitment, due to be asked (again)."""
        now = time.time() if now is None else now
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN instances i ON i.id = j.instance_id "
            "WHERE j.destination = ? AND j.state = ? AND j.commitment = 1 "
            "AND (j.next_attempt IS NULL OR j.next_attempt <= ?) ORDER BY j.id LIMIT ?",
            (destination, SENT, now, limit))
        return [Job(*row) for row in rows]

    def update(self, updates: Iterable[Update]) -> list[tuple[Job, Update]]:
        """Apply state changes in one transaction; returns (job before, change) for each job that exists."""
        updates = list(updates)
        if not updates:
            return []
        before = {job.id: job for job in self.jobs_by_id([u.job_id for u in updates])}
        now = time.time()
        with self._write(durable=False) as db:
            db.executemany(
                "UPDATE jobs SET state = ?, status = ?, reason = ?, next_attempt = ?, "
                "attempts = COALESCE(?, attempts), fallback = COALESCE(?, fallback), updated = ? WHERE id = ?",
                [(u.state, u.status, u.reason, u.next_attempt, u.attempts, u.fallback, now, u.job_id) for u in updates])
        return [(before[u.job_id], u) for u in updates if u.job_id in before]

    def recover(self) -> int:
        """Re-queue jobs a dead process left ``sending``; returns how many."""
        with self._write() as db:
            return db.execute("UPDATE jobs SET state = ?, updated = ? WHERE state = ?",
                              (QUEUED, time.time(), SENDING)).rowcount

    def recover_destination(self, destination: str) -> int:
        """Re-queue the ``sending`` jobs of one destination (after its worker died)."""
        with self._write() as db:
            return db.execute("UPDATE jobs SET state = ?, updated = ? WHERE state = ? AND destination = ?",
                              (QUEUED, time.time(), SENDING, destination)).rowcount

    def destinations_due(self, now: float | None = None) -> dict[str, float]:
        """Destinations with work: name -> earliest time something is due (``sending`` counts as due:
        with no worker alive for it, such a job was left by a failed worker)."""
        now = time.time() if now is None else now
        rows = self._read(
            "SELECT destination, MIN(CASE WHEN state IN (?, ?) THEN 0 ELSE COALESCE(next_attempt, 0) END) FROM jobs "
            "WHERE state IN (?, ?, ?) OR (state = ? AND commitment = 1) GROUP BY destination",
            (QUEUED, SENDING, QUEUED, SENDING, RETRYING, SENT))
        return {name: due for name, due in rows}

    def destination_spec(self, name: str) -> dict[str, Any] | None:
        rows = self._read("SELECT spec FROM destinations WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    # -- people's side ----------------------------------------------------

    def _by_ids(self, ids: Sequence[int], sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of ``sql`` (whose ``{ids}`` becomes the placeholders of up to 500 ids) for all ``ids``."""
        rows: list[tuple] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            rows += self._read(sql.format(ids=",".join("?" * len(chunk))), (*chunk, *params))
        return rows

    def jobs_by_id(self, ids: Sequence[int], state: str | None = None) -> list[Job]:
        """The jobs of ``ids`` (only those in ``state``, if given), by id."""
        where = " AND j.state = ?" if state else ""
        return [Job(*row) for row in self._by_ids(
            ids, f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN instances i ON i.id = j.instance_id "
                 f"WHERE j.id IN ({{ids}}){where} ORDER BY j.id", (state,) if state else ())]

    def unfinished(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` not yet done (see ``Job.done``): an id-only query, cheap enough to poll."""
        return [row[0] for row in self._by_ids(
            ids, "SELECT id FROM jobs WHERE id IN ({ids}) AND (state IN (?, ?, ?) OR (state = ? AND commitment = 1)) "
                 "ORDER BY id", (*PENDING, SENT))]

    def state_counts(self, ids: Sequence[int]) -> dict[str, int]:
        """How many of ``ids`` are in each state (only states present)."""
        counts: dict[str, int] = {}
        for state, count in self._by_ids(ids, "SELECT state, COUNT(*) FROM jobs WHERE id IN ({ids}) GROUP BY state"):
            counts[state] = counts.get(state, 0) + count
        return counts

    def get(self, job_id: int) -> Job | None:
        found = self.jobs_by_id([job_id])
        return found[0] if found else None

    def jobs(self, state: str | None = None, destination: str | None = None, limit: int | None = None) -> list[Job]:
        where, params = [], []
        if state:
            where.append("j.state = ?")
            params.append(state)
        if destination:
            where.append("j.destination = ?")
            params.append(destination)
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN instances i ON i.id = j.instance_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY j.id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [Job(*row) for row in self._read(sql, params)]

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per state per destination (every state present, zeros included)."""
        result: dict[str, dict[str, int]] = {}
        for destination, state, count in self._read("SELECT destination, state, COUNT(*) FROM jobs GROUP BY destination, state"):
            result.setdefault(destination, dict.fromkeys(STATES, 0))[state] = count
        return result

    def remove(self, job_ids: Sequence[int]) -> list[str]:
        """Delete jobs; returns the spool files no job refers to any more (delete them)."""
        if not job_ids:
            return []
        marks = ",".join("?" * len(job_ids))
        with self._write() as db:
            instance_ids = [row[0] for row in db.execute(
                f"SELECT DISTINCT instance_id FROM jobs WHERE id IN ({marks})", list(job_ids))]
            db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", list(job_ids))
            return self._drop_unreferenced(db, instance_ids)

    @staticmethod
    def _drop_unreferenced(db: sqlite3.Connection, instance_ids: Sequence[int]) -> list[str]:
        names = []
        for instance_id in instance_ids:
            if db.execute("SELECT 1 FROM jobs WHERE instance_id = ? LIMIT 1", (instance_id,)).fetchone():
                continue
            row = db.execute("SELECT spool_name FROM instances WHERE id = ?", (instance_id,)).fetchone()
            db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            names.append(row[0])
        return names

    # -- housekeeping -----------------------------------------------------

    def expired_files(self, sent_before: float) -> list[tuple[int, str]]:
        """Instances every job of which was delivered before ``sent_before``: (instance id, spool name)."""
        return self._read(f"SELECT i.id, i.spool_name FROM instances i WHERE {_EXPIRED}", (COMMITTED, SENT, sent_before))

    def forget_delivered(self, instance_id: int, sent_before: float) -> str | None:
        """Delete an expired instance and its jobs; returns its spool file (to delete), or None if no longer expired."""
        with self._write() as db:
            row = db.execute(f"SELECT i.spool_name FROM instances i WHERE i.id = ? AND {_EXPIRED}",
                             (instance_id, COMMITTED, SENT, sent_before)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM jobs WHERE instance_id = ?", (instance_id,))
            db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            return row[0]

    def compact(self) -> None:
        """Rewrite the journal without its free pages (``kiosk outbox purge``: nothing deleted stays in the file)."""
        with self._lock, _damage_reported(self.path):
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def live_spool_names(self) -> set[str]:
        """Spool files the journal still needs."""
        return {row[0] for row in self._read("SELECT spool_name FROM instances")}


@contextmanager
def _damage_reported(path: Path) -> Iterator[None]:
    """Turn SQLite's "damaged file" errors into ``JournalDamagedError``; others pass."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in _DAMAGED:
            raise
        raise JournalDamagedError(f"the outbox journal {path} is damaged ({exc})", RECOVER_HINT) from None
