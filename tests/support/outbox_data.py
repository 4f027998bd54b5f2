"""Small DICOM files for outbox tests and benchmarks (Secondary Capture, uncompressed)."""

from __future__ import annotations

from pathlib import Path

SC = "1.2.840.10008.5.1.4.1.1.7"


def make_instances(folder: Path, count: int, size: int = 4096, patient_id: str = "OUTBOX1") -> dict[str, Path]:
    """Write ``count`` files of about ``size`` bytes of pixels; returns SOP Instance UID -> path."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    side = max(int(size ** 0.5), 8)
    study, series = generate_uid(), generate_uid()
    made: dict[str, Path] = {}
    rng = np.random.default_rng(5)
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID = SC
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName = "Outbox^Test"
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        ds.Modality = "OT"
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = side
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 255, (side, side), dtype=np.uint8).tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SC
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = folder / f"im{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        made[str(ds.SOPInstanceUID)] = path
    return made


def received_uids(folder: Path) -> list[str]:
    """SOP Instance UIDs of every DICOM file under ``folder`` (duplicates kept): not the DICOMDIR, nor a
    PDI File-set's README.TXT and web content (INDEX.HTM, IHE_PDI/)."""
    from pydicom.filereader import read_file_meta_info

    return [str(read_file_meta_info(p).MediaStorageSOPInstanceUID) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in PDI_EXTRAS and p.parent.name != "IHE_PDI"]


PDI_EXTRAS = {"DICOMDIR", "README.TXT", "INDEX.HTM"}


def fill_disk(path: Path) -> None:
    """Write ``path`` until its file system is full to the last byte (another program filling the disk)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
