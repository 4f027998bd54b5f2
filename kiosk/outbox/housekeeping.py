"""Housekeeping: delete delivered files after the retention time, never anything unsent.

A spool file goes only when every job of its instance is delivered (``sent``
without storage commitment, or ``committed``) and has been for
``retention_hours``; its jobs leave the journal with it (the log keeps the
history). Failed, queued and retrying jobs keep their files until
a person retries or removes them. The free-disk threshold itself is enforced
where images are accepted (``Spool.check_free``).
"""

from __future__ import annotations

import logging
import time

from kiosk.outbox.journal import Journal
from kiosk.outbox.spool import Spool

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
