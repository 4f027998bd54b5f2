"""Storage Commitment Push Model SCU: ask a node to take responsibility for what it received.

N-ACTION (Request Storage Commitment) with a fresh Transaction UID; the
N-EVENT-REPORT may come back on the same association or on a new one to our
listener (Orthanc does the latter, 0.2-0.4 s later). Whatever has no answer
when the timeout runs out is "not confirmed": neither committed nor failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

from kiosk.config import Config, LocalConfig, NodeConfig
from kiosk.net import errors
from kiosk.net.listener import STORAGE_COMMITMENT, Listener, Reports, configured_nodes
from kiosk.net.nodes import associate, release

log = logging.getLogger(__name__)

STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known SOP Instance (PS3.4 J.3.2)
SAME_ASSOCIATION_GRACE = 2.0  # seconds we keep the association open for a report on it
ANSWER_GRACE = 5.0  # seconds we let our handler send its N-EVENT-REPORT-RSP before we release


@dataclass
class CommitmentResult:
    """Committed and failed (with Failure Reason) SOP Instance UIDs, and those with no answer."""

    committed: set[str] = field(default_factory=set)
    failed: dict[str, int] = field(default_factory=dict)
    unconfirmed: set[str] = field(default_factory=set)
    transaction_uid: str = ""


def _action_information(instances: Sequence[tuple[str, str]], transaction_uid: str):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in instances:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def request_commitment(node: NodeConfig, local: LocalConfig, instances: Sequence[tuple[str, str]], *,
                       listener: Listener | None = None, timeout: float) -> CommitmentResult:
    """Request commitment of ``instances`` ((SOP Class UID, SOP Instance UID) pairs) from ``node``.

    Reports are taken from ``node`` only, on the association and, if ``listener``
    is given, on new associations to it. Raises ``NetworkError`` if the request itself fails.
    """
    from pydicom.uid import generate_uid
    from pynetdicom import evt
    from pynetdicom.presentation import build_context

    uids = {uid for _, uid in instances}
    transaction_uid = generate_uid()
    reports = listener.reports if listener is not None else Reports()
    pending = reports.expect(transaction_uid, node)
    context = build_context(STORAGE_COMMITMENT)
    context.scu_role, context.scp_role = True, True  # lets the SCP send the report on this association
    started = time.monotonic()
    try:
        assoc = associate(node, local, [context], handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle_event_report)],
                          what="Storage Commitment")
        try:
            status, _ = assoc.send_n_action(_action_information(instances, transaction_uid), 1,
                                            STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE)
            if "Status" not in status:
                raise (errors.abort_error(node, "the storage commitment request") if assoc.is_aborted
                       else errors.timeout_error(node, "the storage commitment request", node.dimse_timeout))
            if int(status.Status) != 0x0000:
                raise errors.NetworkError(
                    f"{node} refused the storage commitment request (status {int(status.Status):04X})",
                    "check that the node supports Storage Commitment and knows this station", node=node, transient=False)
            report = pending.wait(timeout if listener is None else min(timeout, SAME_ASSOCIATION_GRACE))
            pending.wait_answered(ANSWER_GRACE)
        finally:
            release(assoc)
        if report is None and listener is not None:
            report = pending.wait(max(0.0, timeout - (time.monotonic() - started)))
    finally:
        reports.forget(transaction_uid)
    result = CommitmentResult(transaction_uid=transaction_uid)
    if report is not None:
        result.committed = report.committed & uids
        result.failed = {uid: reason for uid, reason in report.failed.items() if uid in uids}
    result.unconfirmed = uids - result.committed - set(result.failed)
    if result.unconfirmed:
        log.warning("storage commitment on %s: %d instance(s) not confirmed within %g s", node, len(result.unconfirmed), timeout)
    return result


def commit_with_listener(node: NodeConfig, config: Config, instances: Sequence[tuple[str, str]], *,
                         timeout: float) -> CommitmentResult:
    """``request_commitment`` with our listener on ``[local] port``: the one running in this process, or
    one started for the duration."""
    running = Listener.running(config.local.port)
    if running is not None:
        running.allow(node)  # an AET@host:port destination may not be among the configured nodes
        return request_commitment(node, config.local, instances, listener=running, timeout=timeout)
    with Listener(config.local, [*configured_nodes(config), node]) as listener:
        return request_commitment(node, config.local, instances, listener=listener, timeout=timeout)
