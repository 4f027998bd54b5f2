"""A patient's CD from another hospital, as tests need it: DICOM files of a foreign patient under
DICOM/, with a DICOMDIR made by DCMTK's dcmmkdir (the real File-set Creator)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.support.peers import require_binary

SC = "1.2.840.10008.5.1.4.1.1.7"
FOREIGN = {"PatientName": "Müller^Hans", "PatientID": "EXT-4711", "IssuerOfPatientID": "OTHERHOSP",
           "PatientBirthDate": "19600203", "PatientSex": "M"}
ACCESSION = "FOREIGN99"
INSTITUTION = "Other Hospital"


def make_medium(root: Path, studies: int = 1, series: int = 2, per_series: int = 2, side: int = 16,
                dicomdir: bool = True, bits: int = 8) -> dict[str, Path]:
    """Write the CD under ``root`` (``root/DICOM/Snnn/Rnnn/Innnn``); SOP Instance UID -> path."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    made: dict[str, Path] = {}
    rng = np.random.default_rng(7)
    for st in range(studies):
        study_uid = generate_uid()
        for se in range(series):
            series_uid = generate_uid()
            folder = root / "DICOM" / f"S{st:03d}" / f"R{se:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_series):
                ds = Dataset()
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.SOPClassUID, ds.SOPInstanceUID = SC, generate_uid()
                for keyword, value in FOREIGN.items():
                    setattr(ds, keyword, value)
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                ds.StudyID, ds.StudyDate, ds.StudyTime = str(st + 1), "20250101", "101500"
                ds.AccessionNumber = ACCESSION
                ds.ReferringPhysicianName = "Doktor^Eva"
                ds.InstitutionName = INSTITUTION
                request = Dataset()
                request.RequestedProcedureID, request.ScheduledProcedureStepID = "FRP1", "FSPS1"
                request.AccessionNumber = ACCESSION
                ds.RequestAttributesSequence = Sequence([request])
                ds.SeriesNumber, ds.InstanceNumber, ds.Modality = se + 1, index + 1, "OT"
                ds.ConversionType = "WSD"
                ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                ds.Rows = ds.Columns = side
                ds.BitsAllocated = ds.BitsStored = bits
                ds.HighBit, ds.PixelRepresentation = bits - 1, 0
                dtype = np.uint8 if bits == 8 else np.uint16
                ds.PixelData = rng.integers(0, 255, (side, side), dtype=dtype).tobytes()
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SC, ds.SOPInstanceUID
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds.file_meta = meta
                path = folder / f"I{index:04d}"
                ds.save_as(path, enforce_file_format=True)
                made[str(ds.SOPInstanceUID)] = path
    if dicomdir:
        make_dicomdir(root)
    return made


def make_dicomdir(root: Path) -> Path:
    """``dcmmkdir`` over ``root/DICOM`` (general purpose CD profile), the DICOMDIR in ``root``."""
    dcmmkdir = require_binary("dcmmkdir")
    subprocess.run([dcmmkdir, "--recurse", "+D", str(root / "DICOMDIR"), "DICOM"], cwd=root, check=True,
                   capture_output=True, timeout=120)
    return root / "DICOMDIR"


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` -> its SHA-256: a medium is unchanged if this is."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
