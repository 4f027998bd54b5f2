"""One builder per audit event the kiosk records (PS3.15 A.5.3), each with typed arguments.

Every builder takes ``app`` (this kiosk: AE title, host, process) and, where a
person may have asked for the action, ``operator`` (their user ID, or None
when nobody signed in). Record the result with ``kiosk.audit.trail.record``.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from kiosk.audit import codes as c
from kiosk.audit.codes import Action, ObjectRole, ObjectType, Outcome
from kiosk.audit.messages import ActiveParticipant, AuditMessage, ParticipantObject, SOPClass

EXPLICIT_LE = "1.2.840.10008.1.2.1"


@functools.lru_cache(maxsize=1)
def host_name() -> str:
    """This machine's name, looked up once (``gethostname``: no DNS query that could block a capture)."""
    return socket.gethostname()


@dataclass(frozen=True)
class Application:
    """This kiosk as an active participant."""

    ae_title: str
    station_name: str = ""
    host: str = field(default_factory=host_name)
    pid: int = field(default_factory=os.getpid)
    site: str = ""  # the institution, AuditEnterpriseSiteID

    @property
    def source_id(self) -> str:
        return self.station_name or self.ae_title

    def participant(self, requestor: bool, *roles: c.Code) -> ActiveParticipant:
        return ActiveParticipant(str(self.pid), requestor, roles, f"AETITLES={self.ae_title}", self.station_name,
                                 self.host)


@dataclass(frozen=True)
class Peer:
    """A remote node: its AE title (or URL for DICOMweb) and host."""

    ae_title: str
    host: str

    def participant(self, requestor: bool, *roles: c.Code) -> ActiveParticipant:
        kind = c.AccessPoint.IP_ADDRESS if _is_address(self.host) else c.AccessPoint.MACHINE_NAME
        return ActiveParticipant(self.ae_title, requestor, roles, f"AETITLES={self.ae_title}", "", self.host, kind)


@dataclass(frozen=True)
class Study:
    """A study taking part in an event, with its patient and the SOP classes involved (uid -> count)."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    sop_classes: tuple[tuple[str, int], ...] = ()
    accession: str = ""

    @property
    def instances(self) -> int:
        return sum(count for _, count in self.sop_classes)

    @classmethod
    def of(cls, context: Any) -> "Study":
        """The study of a ``kiosk.study.StudyContext``."""
        return cls(context.study_uid, context.patient_id, context.patient_name, (), context.accession)


def _is_address(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            continue
    return False


def _operator(operator: str | None, requestor: bool = True, *roles: c.Code) -> tuple[ActiveParticipant, ...]:
    return (ActiveParticipant(operator, requestor, roles),) if operator else ()


def _message(app: Application, event: c.Code, action: Action, outcome: Outcome, participants: tuple,
             objects: tuple = (), types: tuple = (), description: str = "") -> AuditMessage:
    return AuditMessage(event, action, outcome, participants, app.source_id, types, objects, description, app.site)


def _patients_and_studies(studies: tuple[Study, ...] | list[Study]) -> tuple[ParticipantObject, ...]:
    objects: list[ParticipantObject] = []
    patients: dict[str, str] = {}
    for study in studies:
        objects.append(ParticipantObject(
            study.study_uid, c.STUDY_INSTANCE_UID, ObjectType.SYSTEM_OBJECT, ObjectRole.REPORT,
            sop_classes=tuple(SOPClass(uid, n) for uid, n in study.sop_classes),
            accessions=(study.accession,) if study.accession else ()))
        if study.patient_id:
            patients.setdefault(study.patient_id, study.patient_name)
    objects += [ParticipantObject(pid, c.PATIENT_NUMBER, ObjectType.PERSON, ObjectRole.PATIENT, name=name)
                for pid, name in patients.items()]
    return tuple(objects)


def application_activity(app: Application, start: bool, what: str, operator: str | None = None,
                         outcome: Outcome = Outcome.SUCCESS) -> AuditMessage:
    """110100: the touch UI or the delivery service (``what``) started or stopped."""
    participants = (app.participant(False, c.APPLICATION), *_operator(operator, True, c.APPLICATION_LAUNCHER))
    return _message(app, c.APPLICATION_ACTIVITY, Action.EXECUTE, outcome, participants,
                    types=(c.APPLICATION_START if start else c.APPLICATION_STOP,), description=what)


def user_authentication(app: Application, user: str, login: bool = True, succeeded: bool = True,
                        reason: str = "") -> AuditMessage:
    """110114: ``user`` signed in (``login``) or out at this kiosk; a refused sign-in has ``succeeded`` False
    (outcome 4) and ``reason`` says why."""
    participants = (ActiveParticipant(user, True), app.participant(False, c.APPLICATION))
    return _message(app, c.USER_AUTHENTICATION, Action.EXECUTE,
                    Outcome.SUCCESS if succeeded else Outcome.MINOR_FAILURE, participants,
                    types=(c.LOGIN if login else c.LOGOUT,), description=reason)


def query(app: Application, peer: Peer, sop_class_uid: str, identifier: bytes, outcome: Outcome = Outcome.SUCCESS,
          operator: str | None = None, description: str = "") -> AuditMessage:
    """110112: a C-FIND (worklist, PACS) to ``peer``; ``identifier`` the request identifier in Explicit VR
    Little Endian."""
    participants = (app.participant(True, c.SOURCE), *_operator(operator), peer.participant(False, c.DESTINATION))
    obj = ParticipantObject(sop_class_uid, c.SOP_CLASS_UID, ObjectType.SYSTEM_OBJECT, ObjectRole.REPORT,
                            query=identifier, details=(("TransferSyntax", EXPLICIT_LE.encode("ascii")),))
    return _message(app, c.QUERY, Action.EXECUTE, outcome, participants, (obj,), description=description)


def begin_transferring(app: Application, peer: Peer, studies: list[Study], operator: str | None = None) -> AuditMessage:
    """110102: sending ``studies`` to ``peer`` starts."""
    participants = (app.participant(True, c.SOURCE), *_operator(operator), peer.participant(False, c.DESTINATION))
    return _message(app, c.BEGIN_TRANSFERRING, Action.EXECUTE, Outcome.SUCCESS, participants,
                    _patients_and_studies(studies))


def instances_transferred(app: Application, peer: Peer, studies: list[Study], outcome: Outcome = Outcome.SUCCESS,
                          operator: str | None = None, description: str = "") -> AuditMessage:
    """110104: ``studies`` (the instances ``peer`` took) were sent; outcome 4 when some were refused,
    8 when none arrived."""
    participants = (app.participant(True, c.SOURCE), *_operator(operator), peer.participant(False, c.DESTINATION))
    return _message(app, c.INSTANCES_TRANSFERRED, Action.CREATE, outcome, participants,
                    _patients_and_studies(studies), description=description)


def instances_accessed(app: Application, studies: list[Study], action: Action = Action.READ,
                       operator: str | None = None, outcome: Outcome = Outcome.SUCCESS) -> AuditMessage:
    """110103: a study on the PACS was read (shown, or added to)."""
    participants = (app.participant(not operator, c.APPLICATION), *_operator(operator))
    return _message(app, c.INSTANCES_ACCESSED, action, outcome, participants, _patients_and_studies(studies))


def export(app: Application, media: str, studies: list[Study], operator: str | None = None,
           outcome: Outcome = Outcome.SUCCESS) -> AuditMessage:
    """110106: ``studies`` written to removable media (``media``: its label or mount point)."""
    participants = (app.participant(not operator, c.SOURCE), *_operator(operator),
                    ActiveParticipant(media, False, (c.DESTINATION_MEDIA,)))
    return _message(app, c.EXPORT, Action.READ, outcome, participants, _patients_and_studies(studies))


def import_(app: Application, media: str, studies: list[Study], operator: str | None = None,
            outcome: Outcome = Outcome.SUCCESS) -> AuditMessage:
    """110107: ``studies`` read in from media or files (``media``: where from)."""
    participants = (app.participant(not operator, c.DESTINATION), *_operator(operator),
                    ActiveParticipant(media, False, (c.SOURCE_MEDIA,)))
    return _message(app, c.IMPORT, Action.CREATE, outcome, participants, _patients_and_studies(studies))


def security_alert(app: Application, kind: c.Code, subject: str, description: str,
                   outcome: Outcome = Outcome.MINOR_FAILURE, peer: Peer | None = None,
                   operator: str | None = None) -> AuditMessage:
    """110113: ``kind`` (e.g. NODE_AUTHENTICATION for a rejected association or a failed TLS handshake,
    SOFTWARE_CONFIGURATION for settings saved) about ``subject`` (a node, a file)."""
    participants = (app.participant(not operator, c.APPLICATION), *_operator(operator),
                    *((peer.participant(False),) if peer else ()))
    obj = ParticipantObject(subject, c.NODE_ID if peer else c.URI, ObjectType.SYSTEM_OBJECT,
                            ObjectRole.SECURITY_RESOURCE, description=description)
    return _message(app, c.SECURITY_ALERT, Action.EXECUTE, outcome, participants, (obj,), (kind,), description)


def order_record(app: Application, study: Study, action: Action, operator: str | None = None,
                 outcome: Outcome = Outcome.SUCCESS) -> AuditMessage:
    """110109: an order (a worklist item) was used or changed."""
    participants = (app.participant(not operator, c.APPLICATION), *_operator(operator))
    return _message(app, c.ORDER_RECORD, action, outcome, participants, _patients_and_studies([study]))


def procedure_record(app: Application, study: Study, step_uid: str, action: Action, peer: Peer | None = None,
                     operator: str | None = None, outcome: Outcome = Outcome.SUCCESS,
                     description: str = "") -> AuditMessage:
    """110111: a performed procedure step was created (N-CREATE: ``Action.CREATE``) or updated (N-SET)."""
    participants = (app.participant(not operator, c.APPLICATION), *_operator(operator),
                    *((peer.participant(False, c.DESTINATION),) if peer else ()))
    objects = list(_patients_and_studies([study]))
    objects[0] = ParticipantObject(study.study_uid, c.STUDY_INSTANCE_UID, ObjectType.SYSTEM_OBJECT,
                                   ObjectRole.REPORT, accessions=objects[0].accessions, mpps_uids=(step_uid,))
    return _message(app, c.PROCEDURE_RECORD, action, outcome, participants, tuple(objects), description=description)
