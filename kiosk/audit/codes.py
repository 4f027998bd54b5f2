"""Coded values of the DICOM audit message schema (PS3.15 A.5, PS3.16 CID 400-405) and RFC 3881."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


@dataclass(frozen=True)
class Code:
    """A coded value: ``csd-code``, ``codeSystemName`` and ``originalText`` in the XML."""

    value: str
    scheme: str
    meaning: str


def _dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


class Outcome(IntEnum):
    """EventOutcomeIndicator."""

    SUCCESS = 0
    MINOR_FAILURE = 4  # e.g. some instances refused, a failed login
    SERIOUS_FAILURE = 8  # the action did not happen (peer unreachable, refused)
    MAJOR_FAILURE = 12  # the action was made unavailable


class Action(str, Enum):
    """EventActionCode."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class ObjectType(IntEnum):
    """ParticipantObjectTypeCode."""

    PERSON = 1
    SYSTEM_OBJECT = 2
    ORGANIZATION = 3
    OTHER = 4


class ObjectRole(IntEnum):
    """ParticipantObjectTypeCodeRole (RFC 3881)."""

    PATIENT = 1
    REPORT = 3
    RESOURCE = 4
    SECURITY_RESOURCE = 13
    JOB = 20
    QUERY = 24


class AccessPoint(IntEnum):
    """NetworkAccessPointTypeCode."""

    MACHINE_NAME = 1
    IP_ADDRESS = 2


# EventID (CID 400)
APPLICATION_ACTIVITY = _dcm("110100", "Application Activity")
AUDIT_LOG_USED = _dcm("110101", "Audit Log Used")
BEGIN_TRANSFERRING = _dcm("110102", "Begin Transferring DICOM Instances")
INSTANCES_ACCESSED = _dcm("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = _dcm("110104", "DICOM Instances Transferred")
EXPORT = _dcm("110106", "Export")
IMPORT = _dcm("110107", "Import")
ORDER_RECORD = _dcm("110109", "Order Record")
PROCEDURE_RECORD = _dcm("110111", "Procedure Record")
QUERY = _dcm("110112", "Query")
SECURITY_ALERT = _dcm("110113", "Security Alert")
USER_AUTHENTICATION = _dcm("110114", "User Authentication")

# EventTypeCode (CID 401, 402)
APPLICATION_START = _dcm("110120", "Application Start")
APPLICATION_STOP = _dcm("110121", "Application Stop")
LOGIN = _dcm("110122", "Login")
LOGOUT = _dcm("110123", "Logout")
NODE_AUTHENTICATION = _dcm("110126", "Node Authentication")
NETWORK_CONFIGURATION = _dcm("110128", "Network Configuration")
SECURITY_CONFIGURATION = _dcm("110129", "Security Configuration")
SOFTWARE_CONFIGURATION = _dcm("110131", "Software Configuration")
USE_OF_RESTRICTED_FUNCTION = _dcm("110132", "Use of Restricted Function")

# RoleIDCode (CID 402)
APPLICATION = _dcm("110150", "Application")
APPLICATION_LAUNCHER = _dcm("110151", "Application Launcher")
DESTINATION = _dcm("110152", "Destination Role ID")
SOURCE = _dcm("110153", "Source Role ID")
DESTINATION_MEDIA = _dcm("110154", "Destination Media")
SOURCE_MEDIA = _dcm("110155", "Source Media")

# ParticipantObjectIDTypeCode (CID 404, RFC 3881)
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
URI = Code("12", "RFC-3881", "URI")
NODE_ID = _dcm("110182", "Node ID")
STUDY_INSTANCE_UID = _dcm("110180", "Study Instance UID")
SOP_CLASS_UID = _dcm("110181", "SOP Class UID")

# AuditSourceTypeCode
APPLICATION_SERVER_PROCESS = Code("4", "DCM", "Application Server process tier in a multi-tier system")
