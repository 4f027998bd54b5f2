"""Delivery: one worker thread per destination with work, one association at a time each.

The loop looks at the journal (so jobs queued by other processes are seen
within ``poll`` seconds, and at once when queued in this process), starts a
thread for each destination that has something due, and runs housekeeping.
A worker claims a batch (marks it ``sending``), checks the spool files,
sends them in one association and records each instance's outcome:

- success or warning -> ``sent`` (or awaiting storage commitment);
- a transient failure (A7xx, refused, unreachable, timeout, abort) ->
  ``retrying`` with exponential backoff, ``failed`` after ``retry_count + 1``
  attempts (the first and ``retry_count`` retries);
- a permanent failure (A9xx, Cxxx, rejected association) -> ``failed``,
  waiting for a person.

Files are sent as they are in the spool, or as the copies a destination's
coercion rules or lossy transfer syntax ask for (``kiosk.outbox.shaping``):
a re-send after a crash repeats the same SOP Instance UID (a lossy copy's own
one too), never a new one. Recovery at start re-queues jobs left
``sending``, deletes half-written spool files and reports (never deletes)
spool files the journal does not know.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from typing import Callable, Sequence

from kiosk.audit import events, trail
from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.outbox import events as ev
from kiosk.outbox.core import Outbox
from kiosk.outbox.destinations import (DeliveryError, Destination, Item, Outcome, destination_from_spec, node_from_spec,
                                       preload)
from kiosk.outbox.housekeeping import delete_expired, delete_sent_steps
from kiosk.outbox.journal import COMMITTED, FAILED, QUEUED, RETRYING, SENT, Job, Update
from kiosk.outbox.shaping import sent_identity, shaped
from kiosk.outbox.spool import OutboxFullError
from kiosk.outbox.steps import FAILED as STEP_FAILED
from kiosk.outbox.steps import N_CREATE, StepMessage
from kiosk.outbox.steps import RETRYING as STEP_RETRYING
from kiosk.outbox.steps import SENT as STEP_SENT

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY = 300.0
PAUSE_AFTER_ERROR = 5.0
WAIT_GROUP = 500  # job ids per question in wait_for
AWAITING = "awaiting storage commitment"
CANNOT_SEND = "this image cannot be sent, capture or import it again"
DUPLICATE = 0x0111  # an N-CREATE's "duplicate SOP instance"
STEPS = " mpps"  # the worker for performed procedure step messages (no destination has this name)


class Delivery:
    """Delivers an outbox's jobs until ``stop`` is set (or ``until()`` is true)."""

    def __init__(self, outbox: Outbox, config: Config, poll: float = 1.0) -> None:
        self.outbox = outbox
        self.config = config
        self.settings = outbox.settings
        self.poll = poll
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._workers: dict[str, threading.Thread] = {}
        self._paused: dict[str, float] = {}  # destination -> no new worker before this time
        # Jobs that were awaiting their answer when an association failed: each is sent alone
        # next time, so that a file a PACS aborts on cannot take a batch down with it again.
        self._alone: set[int] = set()
        self._unsubscribe = outbox.events.subscribe(self._on_event)

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepQueued) or (isinstance(event, (ev.JobsAdded, ev.StateChanged))
                                                and getattr(event, "new", QUEUED) == QUEUED):
            self._wake.set()

    def wake(self) -> None:
        """Look at the journal now (for jobs another process queued)."""
        self._wake.set()

    def shutdown(self) -> None:
        """Stop soon (safe from a signal handler): the current association is cancelled, its jobs re-queued."""
        self.stop.set()
        self._wake.set()

    def recover(self) -> None:
        """Re-queue jobs a dead process left ``sending``; delete half-written files, report unknown ones."""
        try:
            requeued = self.outbox.journal.recover()
        except sqlite3.OperationalError as exc:
            # A full disk: each destination's worker re-queues its own jobs once it can write.
            log.warning("outbox recovery postponed: the journal cannot be written (%s)", exc)
            requeued = 0
        if requeued:
            log.warning("outbox recovery: %d job(s) interrupted while sending are queued again", requeued)
        self.outbox.spool.recover(self.outbox.journal.live_spool_names())

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """The service loop; the caller holds the delivery lock."""
        preload()
        self.recover()
        next_housekeeping = 0.0
        # The audit trail goes out from the process that delivers (kiosk.audit.sender).
        trail.start_sender()
        trail.record(events.application_activity(trail.application(), True, "delivery service", trail.operator()))
        try:
            while not self.stop.is_set():
                now = time.time()
                if now >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = now + HOUSEKEEPING_EVERY
                self._workers = {n: t for n, t in self._workers.items() if t.is_alive()}
                due = self.outbox.journal.destinations_due(now)
                for name, when in due.items():
                    if when <= now and name not in self._workers and self._paused.get(name, 0) <= now:
                        thread = threading.Thread(target=self._serve, args=(name,), name=f"outbox-{name}", daemon=True)
                        self._workers[name] = thread
                        thread.start()
                step_due = self._step_due()
                if step_due is not None and step_due <= now and STEPS not in self._workers:
                    thread = threading.Thread(target=self._serve_steps, name="outbox-mpps", daemon=True)
                    self._workers[STEPS] = thread
                    thread.start()
                if until is not None and until():
                    return
                later = [when for when in [*due.values(), step_due or 0.0] if when > now]
                wait = min([self.poll] + [max(when - now, 0.01) for when in later])
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            self.stop.set()
            for thread in list(self._workers.values()):
                thread.join()
            self._unsubscribe()
            trail.record(events.application_activity(trail.application(), False, "delivery service", trail.operator()))
            trail.stop_sender()

    def _step_due(self) -> float | None:
        try:
            return self.outbox.next_step_due()
        except sqlite3.OperationalError as exc:  # e.g. a full disk: the messages wait, as the jobs do
            log.warning("outbox: the MPPS messages cannot be read (%s); they wait", exc)
            return None

    def _housekeeping(self) -> None:
        try:
            delete_expired(self.outbox.journal, self.outbox.spool, self.settings.retention_hours)
            delete_sent_steps(self.outbox, self.settings.retention_hours)
        except sqlite3.OperationalError as exc:
            log.warning("outbox housekeeping skipped: the journal cannot be written (%s)", exc)

    # -- one destination --------------------------------------------------

    def _serve(self, name: str) -> None:
        try:
            spec = self.outbox.journal.destination_spec(name) or {}
            try:
                destination = destination_from_spec(name, spec, self.config)
            except (DeliveryError, TypeError, KeyError) as exc:
                self._fail_all(name, f"destination {name!r} cannot be used: {exc}")
                return
            # This process holds the delivery lock and no other thread serves this
            # destination: anything "sending" is left over from a failed attempt.
            self.outbox.journal.recover_destination(name)
            try:
                self._serve_until_done(destination)
            finally:
                destination.close()
        except sqlite3.OperationalError as exc:
            # e.g. "database or disk is full": the jobs stay as they are; tried again at the next poll.
            log.warning("outbox: the journal cannot be written (%s); delivery to %s waits", exc, name)
            self._paused[name] = time.time() + PAUSE_AFTER_ERROR
            self._recover_destination(name)
        except Exception:  # noqa: BLE001 - a bug must not kill the service; jobs stay in the journal
            log.exception("outbox worker for %s failed; it restarts in %g s", name, PAUSE_AFTER_ERROR)
            self._paused[name] = time.time() + PAUSE_AFTER_ERROR
            self._recover_destination(name)
        finally:
            self._wake.set()

    def _serve_until_done(self, destination: Destination) -> None:
        """Send batch after batch (one association while they follow each other), then ask for commitment."""
        name = destination.name
        while not self.stop.is_set():
            jobs = self.outbox.claim(name, self.settings.batch_size)
            if jobs:
                for batch in self._batches(self._prepared(jobs)):
                    self._deliver(destination, batch)
                continue
            awaiting = self.outbox.journal.due_commitments(name, self.settings.batch_size)
            if awaiting and destination.supports_commitment:
                destination.close()  # one association at a time per destination
                self._commit(destination, awaiting)
                continue
            if awaiting:
                self.outbox.apply(Update(j.id, FAILED, None, f"{name} cannot confirm storage commitment") for j in awaiting)
            return

    def _prepared(self, jobs: list[Job]) -> list[Job]:
        """The claimed jobs with their objects written out (``Outbox.prepare``); one whose object cannot be
        is failed, or retried later when the disk is full."""
        ready, updates = [], []
        for job in jobs:
            try:
                ready.append(self.outbox.prepare(job))
            except OutboxFullError as exc:
                updates.append(self._retry_later(job, exc.message))
            except KioskError as exc:
                updates.append(Update(job.id, FAILED, None, f"{exc.message}; {CANNOT_SEND}"))
        self.outbox.apply(updates)
        return ready

    def _batches(self, jobs: list[Job]) -> list[list[Job]]:
        """The claimed jobs to send: those under suspicion (``_alone``) one by one, after the others."""
        alone = [[job] for job in jobs if job.id in self._alone]
        rest = [job for job in jobs if job.id not in self._alone]
        return ([rest] if rest else []) + alone

    def _recover_destination(self, name: str) -> None:
        try:
            self.outbox.journal.recover_destination(name)
        except sqlite3.OperationalError:
            pass  # left "sending": re-queued by the next start's recovery

    def _fail_all(self, name: str, reason: str) -> None:
        while jobs := self.outbox.claim(name, 1000):
            self.outbox.apply(Update(job.id, FAILED, reason=reason) for job in jobs)

    def _retry_later(self, job: Job, reason: str, status: int | None = None) -> Update:
        """The update for a transient failure: retry with backoff, or give up after retry_count."""
        if self.stop.is_set():
            return Update(job.id, QUEUED, status, reason)  # interrupted by shutdown: not an attempt
        attempts = job.attempts + 1
        delay = self._retry_delay(attempts)
        if delay is None:
            return Update(job.id, FAILED, status, f"{reason} (gave up after {attempts} attempts)", attempts=attempts)
        return Update(job.id, RETRYING, status, f"{reason}; retry {attempts} of {self.settings.retry_count} in {delay:g} s",
                      next_attempt=time.time() + delay, attempts=attempts)

    def _retry_delay(self, attempts: int) -> float | None:
        """Seconds to wait after failed attempt number ``attempts``; None once the first try and
        ``retry_count`` retries are used up."""
        return None if attempts > self.settings.retry_count else self.settings.backoff(attempts)

    def _item(self, job: Job) -> Item:
        return Item(self.outbox.spool.path(job.spool_name), job.sop_class_uid, job.sop_instance_uid, job.size,
                    job.transfer_syntax, job.entry.sha256)

    def _deliver(self, destination: Destination, jobs: list[Job]) -> None:
        # Each file is checked against its SHA-256 by the destination (or shaping), on the bytes it reads.
        # A DICOM destination has its node; a folder has none and gets the files as they are.
        with shaped([self._item(j) for j in jobs], getattr(destination, "node", None),
                    self.settings.spool_dir) as ready:
            if ready.refused:
                self.outbox.apply(self._after_send(jobs[index], outcome, destination)
                                  for index, outcome in ready.refused.items())
                jobs = [job for index, job in enumerate(jobs) if index not in ready.refused]
            if jobs:
                self._send(destination, jobs, ready.items)

    def _send(self, destination: Destination, jobs: list[Job], items: list[Item]) -> None:
        total_bytes = sum(item.size for item in items)
        name = destination.name

        def progress(done: int, done_bytes: int) -> None:
            self.outbox.events.publish(ev.Progress(name, done, len(items), done_bytes, total_bytes))

        log.info("outbox: sending %d instance(s) to %s", len(items), name)
        try:
            outcomes = destination.send(items, progress, self.stop)
        except DeliveryError as exc:
            self.outbox.events.publish(ev.DestinationStatus(name, False, exc.message))
            log.warning("outbox: %s: %s", name, exc.message)
            if exc.partial is not None:
                # Keep what was delivered; the rest is retried (or failed) as the error says.
                self.outbox.apply(self._after_send(job, outcome, destination, exc)
                                  for job, outcome in zip(jobs, exc.partial))
            elif exc.transient:
                self.outbox.apply(self._retry_later(job, exc.message) for job in jobs)
            else:
                self.outbox.apply(Update(job.id, FAILED, None, f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
                                  for job in jobs)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in sending must end in 'failed', not loop for ever
            # Counted as an attempt (retry_count bounds it), and each instance goes alone next
            # time, so that only the one that trips the bug fails.
            log.exception("outbox: unexpected error sending to %s", name)
            self._alone.update(job.id for job in jobs)
            reason = f"internal error while sending ({type(exc).__name__}); the kiosk's log file has the details"
            self.outbox.apply(self._retry_later(job, reason) for job in jobs)
            return
        self.outbox.events.publish(ev.DestinationStatus(name, True))
        updates = [self._after_send(job, outcome, destination) for job, outcome in zip(jobs, outcomes)]
        self.outbox.apply(updates)
        counts = {state: sum(u.state == state for u in updates) for state in (SENT, RETRYING, FAILED)}
        log.info("outbox: %s: %s", name, ", ".join(f"{n} {state}" for state, n in counts.items() if n))

    def _after_send(self, job: Job, outcome: Outcome, destination: Destination,
                    error: DeliveryError | None = None) -> Update:
        outcome = self._naming_original(job, outcome)
        code_known = outcome.status is None or f"{outcome.status:04X}" in outcome.message
        status_text = "" if code_known else f" (status 0x{outcome.status:04X})"
        if error is not None and outcome.outcome == "transient" and not error.transient:
            return Update(job.id, FAILED, None, f"{error.message}; fix the cause, then 'kiosk outbox retry {job.id}'")
        self._alone.discard(job.id)
        if error is not None and outcome.outcome == "transient":
            if not outcome.in_flight:
                # Never sent: the association failed on another instance. Not an attempt of this one.
                return Update(job.id, QUEUED, None, f"not sent yet: {error.message}")
            self._alone.add(job.id)
        if outcome.outcome in ("success", "warning"):
            reason = f"accepted with warning{status_text}: {outcome.message}" if outcome.outcome == "warning" else ""
            if job.commitment and destination.supports_commitment:
                reason = reason or AWAITING
            # The entry says when the destination got a video object's fallback, in every state from here on.
            return Update(job.id, SENT, outcome.status, _noted(outcome.fallback, reason), attempts=0,
                          fallback=outcome.fallback)
        if outcome.outcome == "damaged":
            return Update(job.id, FAILED, None, f"{outcome.message}; {CANNOT_SEND}")
        message = outcome.message or "refused by the destination"
        if outcome.outcome == "transient":
            return self._retry_later(job, f"{message}{status_text}", outcome.status)
        return Update(job.id, FAILED, outcome.status, f"{message}{status_text}; fix the cause, then 'kiosk outbox retry {job.id}'")

    def _naming_original(self, job: Job, outcome: Outcome) -> Outcome:
        """``outcome`` with the spool file in its message named as the user knows it: their file's name."""
        spool_path = str(self.outbox.spool.path(job.spool_name))
        if spool_path not in outcome.message:
            return outcome
        copy = f"the outbox's copy of {job.original}" if job.original else f"the spool file {spool_path}"
        return dataclasses.replace(outcome, message=outcome.message.replace(spool_path, copy))

    def _commit(self, destination: Destination, jobs: list[Job]) -> None:
        # Asked for what the destination got: a lossy copy's own UID, a class sent as its fallback,
        # a video object's Multi-frame True Color SC.
        node = getattr(destination, "node", None)
        sent = {job.id: sent_identity(self._item(job), node, bool(job.fallback)) for job in jobs}
        by_uid: dict[str, list[Job]] = {}
        for job in jobs:
            by_uid.setdefault(sent[job.id][1], []).append(job)
        pairs = list(set(sent.values()))
        try:
            result = destination.commit(pairs, self.settings.commitment_timeout)
        except DeliveryError as exc:
            self.outbox.events.publish(ev.DestinationStatus(destination.name, False, exc.message))
            if exc.transient:
                self.outbox.apply(self._commit_later(job, exc.message) for job in jobs)
            else:
                self.outbox.apply(Update(job.id, FAILED, None, f"storage commitment failed: {exc.message}") for job in jobs)
            return
        updates = []
        for uid, group in by_uid.items():
            for job in group:
                if uid in result.committed:
                    updates.append(Update(job.id, COMMITTED, None, job.fallback, attempts=0))
                elif uid in result.failed:
                    code = result.failed[uid]
                    updates.append(Update(job.id, FAILED, code, _noted(
                        job.fallback, f"storage commitment refused by {destination.name} (failure reason 0x{code:04X}); "
                        f"'kiosk outbox retry {job.id}' sends it again")))
                else:
                    updates.append(self._commit_later(job, "storage commitment not confirmed in time"))
        self.outbox.apply(updates)

    def _commit_later(self, job: Job, reason: str) -> Update:
        attempts = job.attempts + 1
        delay = self._retry_delay(attempts)
        if delay is None:
            return Update(job.id, FAILED, None, _noted(job.fallback, f"{reason} (gave up after {attempts} requests); "
                          f"'kiosk outbox retry {job.id}' sends it again"), attempts=attempts)
        return Update(job.id, SENT, None, _noted(job.fallback, f"{AWAITING}: {reason}; asking again in {delay:g} s"),
                      next_attempt=time.time() + delay, attempts=attempts)


    # -- performed procedure steps (MPPS) ------------------------------------

    def _serve_steps(self) -> None:
        """Send the due step messages, each step's in order, one association each."""
        steps = self.outbox.steps
        try:
            for message in steps.blocked():
                self._step_outcome(message, STEP_FAILED, None, "not sent: an earlier message of this step failed")
            while not self.stop.is_set():
                due = steps.due()
                if not due:
                    return
                for message in due:
                    if self.stop.is_set():
                        return
                    self._send_step(message)
        except Exception:  # noqa: BLE001 - a bug must not kill the service; the messages stay queued
            log.exception("outbox: sending performed procedure steps failed; tried again in %g s", PAUSE_AFTER_ERROR)
        finally:
            self._wake.set()

    def _send_step(self, message: StepMessage) -> None:
        from pydicom.dataset import Dataset

        from kiosk.net.errors import NetworkError
        from kiosk.net.mpps import MppsRefused, send_message

        mpps = self.config.mpps
        node = node_from_spec(message.spec, mpps if mpps is not None and mpps.name == message.node else None)
        dataset = Dataset.from_json(message.dataset)
        try:
            status = send_message(node, self.config.local, message.action == N_CREATE, message.step_uid, dataset)
        except MppsRefused as exc:
            if exc.status == DUPLICATE and message.action == N_CREATE:
                # The UID is ours alone: an earlier attempt reached the RIS before its answer was lost.
                self._step_outcome(message, STEP_SENT, exc.status, "the RIS had it already (an earlier attempt arrived)", 0)
            else:
                self._step_outcome(message, STEP_FAILED, exc.status, exc.message)
            return
        except NetworkError as exc:
            if not exc.transient:
                self._step_outcome(message, STEP_FAILED, None, f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
                return
            attempts = message.attempts + 1
            delay = self._retry_delay(attempts)
            if delay is None:
                self._step_outcome(message, STEP_FAILED, None, f"{exc.message} (gave up after {attempts} attempts)", attempts)
                return
            self._step_outcome(message, STEP_RETRYING, None, f"{exc.message}; retry {attempts} of "
                               f"{self.settings.retry_count} in {delay:g} s", attempts, time.time() + delay)
            return
        warning = f"accepted with warning (status 0x{status:04X})" if status else ""
        self._step_outcome(message, STEP_SENT, status, warning, 0)

    def _step_outcome(self, message: StepMessage, state: str, status: int | None, reason: str,
                      attempts: int | None = None, next_attempt: float | None = None) -> None:
        self.outbox.steps.update(message.id, state, status, reason, next_attempt, attempts)
        log.log(logging.INFO if state == STEP_SENT else logging.WARNING, "outbox: MPPS %s (%s, %s) to %s: %s%s",
                message.action, message.step_status, message.label, message.node, state, f": {reason}" if reason else "")
        self.outbox.events.publish(ev.StepChanged(message.id, message.step_uid, message.action, state, status, reason))


def _noted(fallback: str, reason: str) -> str:
    """``reason`` after what the destination got instead of a video object (``fallback``), if it did."""
    return "; ".join(filter(None, [fallback, reason]))


def wait_for(outbox: Outbox, job_ids: Sequence[int]) -> Callable[[], bool]:
    """An ``until`` for ``Delivery.run``: true once every job is delivered or failed.

    Each call asks only about the jobs not yet done, by id, and a few hundred
    at a time from the lowest, stopping at the first group with one still
    pending: jobs go out in id order, so that is usually the only question.
    (Polling 10,000 jobs as full rows every 0.25 s took the delivery's CPU.)
    A done job can become pending again only by a person's retry, which
    starts a new wait.
    """
    remaining = list(job_ids)

    def done() -> bool:
        while remaining:
            group = remaining[:WAIT_GROUP]
            pending = outbox.journal.unfinished(group)
            remaining[:len(group)] = pending
            if pending:
                return False
        return True

    return done


def idle(outbox: Outbox) -> bool:
    """Nothing left to do: no job queued, sending, retrying or awaiting commitment, no step message waiting."""
    return not outbox.journal.destinations_due(float("inf")) and outbox.next_step_due() is None
