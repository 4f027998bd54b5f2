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


def medium_of(root: Path):  # noqa: ANN201 - kiosk.media.model.Medium
    """The ``Medium`` of a folder of DICOM files, from their headers (a stand-in for the reader)."""
    from pydicom import dcmread

    from kiosk.media.model import MediaInstance, MediaPatient, MediaProblem, MediaSeries, MediaStudy, Medium

    medium = Medium(root, root.name, (root / "DICOMDIR").exists())
    patients: dict[str, MediaPatient] = {}
    studies: dict[str, MediaStudy] = {}
    series: dict[str, MediaSeries] = {}
    for path in sorted(p for p in (root / "DICOM").rglob("*") if p.is_file()):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - as the reader, a file that is no DICOM is a problem
            medium.problems.append(MediaProblem(path, f"is no DICOM file ({type(exc).__name__})"))
            continue
        patient = patients.get(str(ds.PatientID))
        if patient is None:
            patient = patients[str(ds.PatientID)] = MediaPatient(
                str(ds.PatientID), str(ds.get("IssuerOfPatientID", "")), str(ds.PatientName),
                str(ds.get("PatientBirthDate", "")), str(ds.get("PatientSex", "")))
            medium.patients.append(patient)
        study = studies.get(str(ds.StudyInstanceUID))
        if study is None:
            study = studies[str(ds.StudyInstanceUID)] = MediaStudy(
                str(ds.StudyInstanceUID), str(ds.StudyDate), accession=str(ds.get("AccessionNumber", "")))
            patient.studies.append(study)
        one = series.get(str(ds.SeriesInstanceUID))
        if one is None:
            one = series[str(ds.SeriesInstanceUID)] = MediaSeries(str(ds.SeriesInstanceUID), str(ds.Modality),
                                                                  int(ds.SeriesNumber))
            study.series.append(one)
        one.instances.append(MediaInstance(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                           str(ds.file_meta.TransferSyntaxUID), int(ds.InstanceNumber),
                                           path.stat().st_size))
    return medium
