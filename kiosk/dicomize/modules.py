"""Modules shared by every object: Patient, General Study, Patient Study,
General Series, General and SC Equipment, SOP Common, Original Attributes.

Each ``add_*`` function fills one module (or a group of related ones) of a
dataset from the study context and the batch settings; the patient, study,
request and performed procedure step attributes follow the study-context
table (``kiosk.study.ATTRIBUTES``), IHE RAD TF-2 Appendix A.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from kiosk import __version__
from kiosk.capture import Capture, SourceKind
from kiosk.dicomize.batch import BatchState, default_study_id, dicom_date, dicom_time
from kiosk.dicomize.uids import MANUFACTURER, MODEL_NAME
from kiosk.study import ATTRIBUTES, PATIENT, REQUEST, STUDY, Attribute, StudyContext, sequence_items

CONVERSION_TYPE = {
    SourceKind.SCANNED_DOCUMENT: "SD",
    SourceKind.DIGITIZED_FILM: "DF",
    SourceKind.SCANNED_IMAGE: "SI",
    SourceKind.VIDEO_FRAME: "DV",
    SourceKind.FILE_IMPORT: "WSD",
}


def patient_age(birth_date: str, on: dt.date) -> str:
    """Patient's Age (AS) on ``on``: days under 4 weeks, weeks under ~3 months, months under 2 years, else years."""
    if not birth_date:
        return ""
    born = dt.datetime.strptime(birth_date, "%Y%m%d").date()
    if born > on:
        return ""
    days = (on - born).days
    months = (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)
    years = months // 12
    if days < 28:
        return f"{days:03d}D"
    if months < 3:
        return f"{days // 7:03d}W"
    if years < 2:
        return f"{months:03d}M"
    return f"{min(years, 999):03d}Y"


def add_patient_and_study(ds: Dataset, batch: BatchState) -> None:
    """Patient, General Study and Patient Study modules from the study context (``kiosk.study.ATTRIBUTES``)."""
    study: StudyContext = batch.study
    # Type 1 and the Study ID, which DICOMDIRs and some viewers list, get a value when the context has none.
    defaults = {"study_uid": batch.study_uid, "study_date": batch.study_date, "study_time": batch.study_time,
                "study_id": default_study_id(study, batch.step)}
    for attribute in ATTRIBUTES:
        if attribute.module in (PATIENT, STUDY):
            _put(ds, attribute, getattr(study, attribute.field) or defaults.get(attribute.field, ""))
    age = study.patient_age or patient_age(study.birth_date, dt.datetime.strptime(batch.study_date, "%Y%m%d").date())
    if age:  # the order's own, else worked out from the birth date on the study date
        ds.PatientAge = age


def add_request_attributes(ds: Dataset, study: StudyContext) -> None:
    """Request Attributes Sequence (General Series), IHE RAD TF-2 Appendix A, when an order is known."""
    if not (study.requested_procedure_id or study.scheduled_step_id):
        return
    item = Dataset()
    for attribute in ATTRIBUTES:
        if attribute.module == REQUEST:
            _put(item, attribute, getattr(study, attribute.field))
        elif attribute.request and getattr(study, attribute.field):  # the order's own values only
            _put(item, attribute, getattr(study, attribute.field), attribute.request)
    ds.RequestAttributesSequence = Sequence([item])


def add_performed_procedure_step(ds: Dataset, batch: BatchState) -> None:
    """The General Series' Performed Procedure Step attributes: the batch's step (the ID and start
    the MPPS for it carries), described as the scheduled step was."""
    ds.PerformedProcedureStepID = batch.step.id
    ds.PerformedProcedureStepStartDate = dicom_date(batch.step.start)
    ds.PerformedProcedureStepStartTime = dicom_time(batch.step.start)
    for attribute in ATTRIBUTES:
        if attribute.performed and getattr(batch.study, attribute.field):
            _put(ds, attribute, getattr(batch.study, attribute.field), attribute.performed)


def _put(ds: Dataset, attribute: Attribute, value: Any, keyword: str = "") -> None:
    """Write ``value`` as ``keyword`` (the attribute's own by default) as its Type asks: Type 3 only when known."""
    if not value and attribute.type == "3":
        return
    if attribute.vr == "SQ":
        value = Sequence(sequence_items(value))
    setattr(ds, keyword or attribute.keyword, value)


def add_series(ds: Dataset, batch: BatchState, series_uid: str, series_number: int, modality: str,
               kind: SourceKind) -> None:
    """General Series (or Encapsulated Document Series) module; ``kind``: the source of its first capture."""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate = batch.series_date
    ds.SeriesTime = batch.series_time
    ds.SeriesDescription = batch.series_description(series_uid, kind)
    if batch.options.operators_name:
        ds.OperatorsName = batch.options.operators_name
    if batch.options.body_part:
        ds.BodyPartExamined = batch.options.body_part
    add_performed_procedure_step(ds, batch)
    add_request_attributes(ds, batch.study)


def add_equipment(ds: Dataset, batch: BatchState, capture: Capture) -> None:
    """General Equipment and SC Equipment modules."""
    add_general_equipment(ds, batch)
    add_sc_equipment(ds, batch, capture)


def add_general_equipment(ds: Dataset, batch: BatchState) -> None:
    """General Equipment module: the kiosk, at the configured institution and station."""
    options = batch.options
    ds.Manufacturer = MANUFACTURER
    if options.institution_name:
        ds.InstitutionName = options.institution_name
    if options.institution_address:
        ds.InstitutionAddress = options.institution_address
    if options.department:
        ds.InstitutionalDepartmentName = options.department
    if options.station_name:
        ds.StationName = options.station_name
    ds.ManufacturerModelName = MODEL_NAME
    ds.SoftwareVersions = __version__


def add_sc_equipment(ds: Dataset, batch: BatchState, capture: Capture, conversion_type: str = "") -> None:
    """SC Equipment module; ``conversion_type``: the default for the capture's kind when not configured."""
    ds.ConversionType = batch.options.conversion_type or conversion_type or CONVERSION_TYPE[capture.kind]
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = MODEL_NAME
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    device = capture.metadata.get("device")
    if isinstance(device, str) and device:
        ds.SecondaryCaptureDeviceID = device[:64]


def add_sop_common(ds: Dataset, batch: BatchState, sop_class_uid: str) -> None:
    """SOP Common module (the character set is set last, from the content)."""
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = batch.new_uid()
    ds.InstanceCreationDate = batch.series_date
    ds.InstanceCreationTime = batch.series_time
    add_original_attributes(ds, batch)


def add_original_attributes(ds: Dataset, batch: BatchState) -> None:
    """Original Attributes Sequence: the worklist/PACS values the user corrected."""
    study = batch.study
    if not study.original:
        return
    modified = Dataset()
    for keyword, value in sorted(study.original.items()):
        setattr(modified, keyword, value)
    item = Dataset()
    item.SourceOfPreviousValues = study.source_ae
    item.AttributeModificationDateTime = batch.now.strftime("%Y%m%d%H%M%S")
    item.ModifyingSystem = f"{MODEL_NAME} {__version__}"
    item.ReasonForTheAttributeModification = "CORRECT"
    item.ModifiedAttributesSequence = Sequence([modified])
    ds.OriginalAttributesSequence = Sequence([item])


def add_capture_times(ds: Dataset, capture: Capture, secondary_capture: bool = True) -> None:
    """Content and acquisition date/time, and (``secondary_capture``) the SC Image date/time of capture."""
    when = capture.acquired_at
    ds.ContentDate = dicom_date(when)
    ds.ContentTime = dicom_time(when)
    ds.AcquisitionDate = dicom_date(when)
    ds.AcquisitionTime = dicom_time(when)
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    if secondary_capture:
        ds.DateOfSecondaryCapture = dicom_date(when)
        ds.TimeOfSecondaryCapture = dicom_time(when)

