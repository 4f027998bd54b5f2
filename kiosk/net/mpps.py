"""Modality Performed Procedure Step SCU (PS3.4 F.7): N-CREATE and N-SET to the RIS.

One association per message: a step sends a handful of messages over minutes,
and each must be answered before the next is tried.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kiosk import transfer_syntaxes as tsx
from kiosk.config import LocalConfig, NodeConfig
from kiosk.net import errors
from kiosk.net.nodes import associate, release

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"

# PS3.4 F.7.2.1.2 / F.7.2.2.2 and PS3.7 C.4.2.1.4: what a failure status means.
STATUS_MEANINGS = {
    0x0105: "no such attribute", 0x0106: "invalid attribute value", 0x0107: "attribute list error",
    0x0110: "processing failure", 0x0111: "duplicate SOP instance", 0x0112: "no such SOP instance",
    0x0116: "attribute value out of range", 0x0117: "invalid object instance", 0x0118: "no such SOP class",
    0x0119: "class-instance conflict", 0x0120: "missing attribute", 0x0121: "missing attribute value",
    0x0122: "SOP class not supported", 0x0124: "not authorized", 0x0212: "mistyped argument",
    0xC310: "the step is no longer IN PROGRESS", 0xA710: "refused: out of resources",
}
WARNINGS = (0x0001, 0x0107, 0x0116)  # attribute list error / value out of range: done, with a warning


class MppsRefused(errors.NetworkError):
    """The RIS answered with a failure status: sending the same message again cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, "the RIS keeps the step as it was; see its log, or end the step there",
                         transient=False)
        self.status = status


def send_message(node: NodeConfig, local: LocalConfig, create: bool, sop_instance_uid: str,
                 dataset: "Dataset") -> int:
    """N-CREATE (``create``) or N-SET of the step ``sop_instance_uid``; returns the (success or
    warning) status. Raises ``MppsRefused`` for a failure status, ``NetworkError`` otherwise."""
    import pynetdicom  # noqa: F401 - the package before its submodules (see kiosk.net.find)
    from pynetdicom.presentation import build_context

    what = "N-CREATE" if create else "N-SET"
    context = build_context(MPPS_SOP_CLASS, [tsx.EXPLICIT_LE.uid, tsx.IMPLICIT_LE.uid])
    assoc = associate(node, local, [context], what=f"the performed procedure step {what}")
    try:
        if create:
            status, _ = assoc.send_n_create(dataset, MPPS_SOP_CLASS, sop_instance_uid)
        else:
            status, _ = assoc.send_n_set(dataset, MPPS_SOP_CLASS, sop_instance_uid)
    finally:
        release(assoc)
    if "Status" not in status:
        raise errors.NetworkError(f"{node} did not answer the performed procedure step {what}",
                                  "check the RIS's DIMSE timeout and network", node=node)
    code = int(status.Status)
    if code == 0x0000 or code in WARNINGS:
        return code
    comment = re.sub(r"[\x00-\x1f\x7f-\x9f]", "\ufffd", str(status.get("ErrorComment", "") or ""))
    meaning = STATUS_MEANINGS.get(code, "failure")
    if code in (0xA700, 0xA710, 0x0213):  # out of resources, resource limitation: try later
        raise errors.NetworkError(f"{node} is busy ({meaning}, status {code:04X}) for the {what}",
                                  "it is sent again later", node=node)
    raise MppsRefused(f"{node} refused the performed procedure step {what}: {meaning} (status {code:04X})"
                      + (f": {comment}" if comment else ""), code)
