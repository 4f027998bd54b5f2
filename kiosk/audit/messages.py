"""The ``AuditMessage`` of DICOM PS3.15 A.5.1, as small dataclasses, and its XML (``ElementTree`` escapes)."""

from __future__ import annotations

import base64
import datetime as dt
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from kiosk.audit.codes import (APPLICATION_SERVER_PROCESS, AccessPoint, Action, Code, ObjectRole, ObjectType,
                               Outcome)


@dataclass(frozen=True)
class ActiveParticipant:
    """A person or process taking part: the operator, the kiosk application, a remote AE."""

    user_id: str
    requestor: bool
    roles: tuple[Code, ...] = ()
    alternative_user_id: str = ""  # "AETITLES=..." for a DICOM application
    user_name: str = ""
    access_point: str = ""  # host name or IP address
    access_point_type: AccessPoint = AccessPoint.MACHINE_NAME


@dataclass(frozen=True)
class SOPClass:
    """The instances of one SOP class in a study participant."""

    uid: str
    count: int


@dataclass(frozen=True)
class ParticipantObject:
    """Data the event was about: a patient, a study, a query, a security resource."""

    object_id: str
    id_type: Code
    object_type: ObjectType
    role: ObjectRole
    name: str = ""  # e.g. the patient's name
    query: bytes = b""  # the query identifier as sent (base64 in the XML)
    details: tuple[tuple[str, bytes], ...] = ()  # ParticipantObjectDetail type/value (value base64)
    description: str = ""
    sop_classes: tuple[SOPClass, ...] = ()
    accessions: tuple[str, ...] = ()
    mpps_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditMessage:
    """One audit message; ``xml()`` renders it."""

    event_id: Code
    action: Action
    outcome: Outcome
    participants: tuple[ActiveParticipant, ...]
    source_id: str  # AuditSourceIdentification AuditSourceID: which kiosk
    event_types: tuple[Code, ...] = ()
    objects: tuple[ParticipantObject, ...] = ()
    outcome_description: str = ""
    site_id: str = ""  # AuditEnterpriseSiteID (the institution)
    time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).astimezone())

    def xml(self) -> bytes:
        """The message as UTF-8 XML (no declaration: RFC 5424 MSG with a BOM says the encoding)."""
        root = ET.Element("AuditMessage")
        event = ET.SubElement(root, "EventIdentification", {
            "EventActionCode": self.action.value, "EventDateTime": self.time.isoformat(timespec="milliseconds"),
            "EventOutcomeIndicator": str(int(self.outcome))})
        _code(event, "EventID", self.event_id)
        for code in self.event_types:
            _code(event, "EventTypeCode", code)
        if self.outcome_description:
            ET.SubElement(event, "EventOutcomeDescription").text = self.outcome_description
        for p in self.participants:
            attrs = {"UserID": p.user_id, "UserIsRequestor": "true" if p.requestor else "false"}
            if p.alternative_user_id:
                attrs["AlternativeUserID"] = p.alternative_user_id
            if p.user_name:
                attrs["UserName"] = p.user_name
            if p.access_point:
                attrs["NetworkAccessPointID"] = p.access_point
                attrs["NetworkAccessPointTypeCode"] = str(int(p.access_point_type))
            element = ET.SubElement(root, "ActiveParticipant", attrs)
            for role in p.roles:
                _code(element, "RoleIDCode", role)
        source_attrs = {"AuditSourceID": self.source_id}
        if self.site_id:
            source_attrs["AuditEnterpriseSiteID"] = self.site_id
        source = ET.SubElement(root, "AuditSourceIdentification", source_attrs)
        _code(source, "AuditSourceTypeCode", APPLICATION_SERVER_PROCESS)
        for o in self.objects:
            element = ET.SubElement(root, "ParticipantObjectIdentification", {
                "ParticipantObjectID": o.object_id, "ParticipantObjectTypeCode": str(int(o.object_type)),
                "ParticipantObjectTypeCodeRole": str(int(o.role))})
            _code(element, "ParticipantObjectIDTypeCode", o.id_type)
            if o.query:
                ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(o.query).decode("ascii")
            elif o.name:
                ET.SubElement(element, "ParticipantObjectName").text = o.name
            for kind, value in o.details:
                ET.SubElement(element, "ParticipantObjectDetail",
                              {"type": kind, "value": base64.b64encode(value).decode("ascii")})
            if o.description:
                ET.SubElement(element, "ParticipantObjectDescription").text = o.description
            for sop in o.sop_classes:
                ET.SubElement(element, "SOPClass", {"UID": sop.uid, "NumberOfInstances": str(sop.count)})
            for accession in o.accessions:
                ET.SubElement(element, "Accession", {"Number": accession})
            for uid in o.mpps_uids:
                ET.SubElement(element, "MPPS", {"UID": uid})
        return ET.tostring(root, encoding="utf-8", xml_declaration=False)

    def summary(self) -> str:
        """One line for ``kiosk audit list``: participants (AE title or user ID; * the requestor), objects by ID."""
        people = ", ".join(f"{p.alternative_user_id.removeprefix('AETITLES=') or p.user_id}{'*' if p.requestor else ''}"
                           for p in self.participants)
        objects = ", ".join(f"{o.id_type.meaning} {o.object_id}" for o in self.objects)
        return f"{people}{'; ' + objects if objects else ''}"


def _code(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(parent, tag, {"csd-code": code.value, "codeSystemName": code.scheme,
                                       "originalText": code.meaning})
