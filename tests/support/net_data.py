"""DICOM files for the networking tests: Secondary Capture instances, uncompressed or compressed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def make_sc(path: Path, rows: int = 64, cols: int = 64, *, rgb: bool = True, patient_name: str = "TEST^NET",
            charset: str = "ISO_IR 100", transfer_syntax: str = ExplicitVRLittleEndian, seed: int = 0,
            study_uid: str | None = None) -> Path:
    """Write a small valid-enough Secondary Capture image; compressed if ``transfer_syntax`` says so."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = "NET001"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate = "20260101"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        pixels = rng.integers(0, 255, (rows, cols, 3), dtype=np.uint8)
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        pixels = rng.integers(0, 255, (rows, cols), dtype=np.uint8)
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


class ScriptedSCP:
    """A pynetdicom SCP in the test process, answering as the test decides (status codes, reports)."""

    def __init__(self, aet: str = "SCRIPTED", contexts=(), handlers=(), transfer_syntaxes=None, max_pdu: int | None = None):
        from pynetdicom import AE

        from tests.support.peers import HOST, free_port

        self.ae = AE(ae_title=aet)
        if max_pdu is not None:
            self.ae.maximum_pdu_size = max_pdu
        for context in contexts:
            if isinstance(context, tuple):
                self.ae.add_supported_context(*context)
            elif transfer_syntaxes:
                self.ae.add_supported_context(context, transfer_syntaxes)
            else:
                self.ae.add_supported_context(context)
        self.aet = aet
        self.port = free_port()
        self.server = self.ae.start_server((HOST, self.port), block=False, evt_handlers=list(handlers))
        self.url = f"{aet}@{HOST}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
