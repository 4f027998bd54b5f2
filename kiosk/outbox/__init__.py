"""The outbox: a durable send queue that never loses an image.

- ``core.Outbox``: accept instances (spool + journal), manage jobs, events, summary;
- ``worker.Delivery``: the delivery loop (one association at a time per destination);
- ``destinations``: DICOM C-STORE and DICOMDIR folder destinations;
- ``spool``, ``journal``, ``housekeeping``, ``events``: the parts.
"""

from kiosk.outbox.core import Outbox, OutboxSettings
from kiosk.outbox.journal import COMMITTED, FAILED, QUEUED, RETRYING, SENDING, SENT, STATES, Job
from kiosk.outbox.spool import OutboxFullError

__all__ = ["Outbox", "OutboxSettings", "Job", "OutboxFullError", "STATES",
           "QUEUED", "SENDING", "SENT", "COMMITTED", "RETRYING", "FAILED"]
