"""Housekeeping: delete delivered files after the retention time, never anything unsent.

A spool file goes only when every job of its instance is delivered (``sent``
without storage commitment, or ``committed``) and has been for
``retention_hours``; its jobs leave the journal with it (the log keeps the
history). A performed procedure step's MPPS messages (patient data too) go
``retention_hours`` after the last of them was sent. ``purge`` does all
that at once, for everything delivered (decommissioning a kiosk). Failed, queued and retrying jobs keep their files until
a person retries or removes them. The free-disk threshold itself is enforced
where images are accepted (``Spool.check_free``).
"""

from __future__ import annotations

import logging
import time

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiosk.outbox.journal import Journal
from kiosk.outbox.spool import Spool

if TYPE_CHECKING:
    from kiosk.outbox.core import Outbox

log = logging.getLogger(__name__)


def delete_expired(journal: Journal, spool: Spool, retention_hours: float, now: float | None = None) -> int:
    """Delete spool files (and their jobs) delivered more than ``retention_hours`` ago; returns how many."""
    cutoff = (time.time() if now is None else now) - retention_hours * 3600
    deleted = 0
    for instance_id, _name in journal.expired_files(cutoff):
        # Re-checked under the journal's write lock: a retry may have come in since.
        name = journal.forget_delivered(instance_id, cutoff)
        if name:
            spool.remove(name)
            deleted += 1
    if deleted:
        log.info("outbox: deleted %d delivered file(s) older than %g h", deleted, retention_hours)
    return deleted


def delete_sent_steps(outbox: "Outbox", retention_hours: float, now: float | None = None) -> int:
    """Delete the MPPS messages of steps wholly sent more than ``retention_hours`` ago; returns how many."""
    if not outbox.has_steps():
        return 0
    cutoff = (time.time() if now is None else now) - retention_hours * 3600
    deleted = outbox.steps.forget_sent(cutoff)
    if deleted:
        log.info("outbox: deleted %d sent MPPS message(s) older than %g h", deleted, retention_hours)
    return deleted


@dataclass(frozen=True)
class Purged:
    """What ``purge`` deleted, and what it had to keep (not delivered yet, or failed)."""

    files: int
    step_messages: int
    kept_jobs: int


def purge(outbox: "Outbox") -> Purged:
    """Delete everything delivered now (spool files, their jobs, sent MPPS messages) and rewrite the
    journal files without free pages, so that nothing deleted stays readable in them."""
    now = time.time() + 1  # "delivered before now", with the clock's last second included
    files = delete_expired(outbox.journal, outbox.spool, 0, now)
    steps = delete_sent_steps(outbox, 0, now)
    outbox.journal.compact()
    if outbox.has_steps():
        outbox.steps.compact()
    kept = sum(sum(counts.values()) for counts in outbox.summary().values())
    return Purged(files, steps, kept)
