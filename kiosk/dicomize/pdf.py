"""Encapsulated PDF Storage: the PDF kept byte for byte, never rasterized."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import EncapsulatedPDFStorage

from kiosk import transfer_syntaxes as tsx
from kiosk.capture import Capture
from kiosk.dicomize import modules
from kiosk.dicomize.batch import BatchState
from kiosk.dicomize.codecs import set_file_meta


def build_pdf(batch: BatchState, capture: Capture, instance_number: int) -> Dataset:
    """One Encapsulated PDF object (Encapsulated Document Series, modality DOC by default)."""
    data = capture.encoded or b""
    ds = Dataset()
    modules.add_patient_and_study(ds, batch)
    modules.add_series(ds, batch, batch.document_series_uid, batch.document_series_number,
                       batch.document_modality, capture.kind)
    modules.add_equipment(ds, batch, capture)
    ds.InstanceNumber = instance_number
    modules.add_capture_times(ds, capture)
    # Neither the SC Image nor the General Image module, nor the operator, is part of this IOD.
    for keyword in ("DateOfSecondaryCapture", "TimeOfSecondaryCapture", "AcquisitionDate", "AcquisitionTime",
                    "OperatorsName"):
        ds.pop(keyword, None)
    ds.BurnedInAnnotation = "YES"
    title = capture.metadata.get("title") or capture.source.rsplit("/", 1)[-1]
    ds.DocumentTitle = str(title)[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    # OB must have even length; the true length says where the PDF ends.
    ds.EncapsulatedDocument = data + b"\0" if len(data) % 2 else data
    ds.EncapsulatedDocumentLength = len(data)
    modules.add_sop_common(ds, batch, EncapsulatedPDFStorage)
    set_file_meta(ds, tsx.EXPLICIT_LE.uid)
    return ds
