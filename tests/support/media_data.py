"""A patient's CD as another hospital would hand it over, for the media tests (fixture ``dicom_cd``).

pydicom's test files of many SOP classes and transfer syntaxes, given two patients, four studies and
new SOP Instance UIDs (several test files share one), written in an ISO 9660 layout (upper-case names
of up to 8 characters, no extensions) and indexed by DCMTK's ``dcmmkdir``: the DICOMDIR is a real
peer's, not the kiosk's. ``build_dicom_cd`` returns the truth the reader must find.
"""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.peers import require_binary

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n" \
      b"trailer<</Root 1 0 R>>\n%%EOF\n"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
LABEL = "KIOSKTESTCD"
# dcmmkdir's options: the General Purpose CD profile, told to accept (only warn about) the transfer syntaxes
# and pixel encodings that profile does not list (hospitals' CDs hold them), and the retired SOP classes.
DCMMKDIR = ["-q", "+r", "-Pgp", "-Nxc", "-Nec", "-Nrc", "+Nrs", "+I", "+F", LABEL]


@dataclass
class TruthSeries:
    uid: str
    number: int
    modality: str
    description: str
    files: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> path relative to the root
    transfer_syntaxes: set[str] = field(default_factory=set)


@dataclass
class TruthStudy:
    uid: str
    date: str
    description: str
    series: list[TruthSeries] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        return list(dict.fromkeys(s.modality for s in self.series))


@dataclass
class TruthPatient:
    patient_id: str
    issuer: str
    name: str
    studies: list[TruthStudy] = field(default_factory=list)


@dataclass
class DicomCd:
    """What ``build_dicom_cd`` wrote: the medium's root and, in the order the reader sorts them, its contents."""

    root: Path
    label: str
    patients: list[TruthPatient]

    @property
    def files(self) -> dict[str, str]:
        """SOP Instance UID -> path relative to the root, of every instance."""
        return {uid: path for p in self.patients for st in p.studies for se in st.series for uid, path in se.files.items()}


# (patient ID, issuer, name, birth date, sex, character set), then per study (date, time, description), then per
# series (number, modality, description, source files: pydicom test file names, or "pdf" / "video" made here).
LAYOUT = [
    (("PAT001", "HOSP_A", "DOE^JANE", "19700101", "F", ""), [
        (("20230105", "101500", "CT HEAD"), [
            (1, "CT", "HEAD AXIAL", ["CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"]),
            (2, "MR", "T1", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                             "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]),
        ]),
        (("20240310", "090000", "US ABDOMEN"), [
            (1, "US", "ABDOMEN", ["examples_jpeg2k.dcm", "ExplVR_BigEnd.dcm", "examples_ybr_color.dcm"]),
            (2, "SR", "REPORT", ["reportsi.dcm", "test-SR.dcm"]),
            (3, "DOC", "REFERRAL LETTER", ["pdf"]),
        ]),
    ]),
    (("PAT002", "", "MÜLLER^HANS", "19851212", "M", "ISO_IR 100"), [
        (("20220720", "143000", "CHEST"), [
            (1, "CR", "PA", ["dicomdirtests/77654033/CR1/6154", "dicomdirtests/77654033/CR2/6247"]),
            (2, "OT", "SCREEN CAPTURES", ["SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_gdcm_KY.dcm",
                                          "image_dfl.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPEGLSNearLossless_08.dcm"]),
        ]),
        (("20221001", "080000", "RADIOTHERAPY"), [
            (1, "RTDOSE", "DOSE", ["rtdose.dcm", "rtdose_rle.dcm"]),
            (2, "RTPLAN", "PLAN", ["rtplan.dcm"]),
            (3, "ECG", "RESTING ECG", ["waveform_ecg.dcm"]),
            (4, "ES", "ENDOSCOPY CLIP", ["video"]),
        ]),
    ]),
]


def build_dicom_cd(root: Path) -> DicomCd:
    """Write the medium under ``root`` (made here) and run ``dcmmkdir`` over it; returns the truth."""
    from pydicom.uid import generate_uid

    root.mkdir(parents=True)
    patients = []
    for p_index, ((pid, issuer, name, birth, sex, charset), studies) in enumerate(LAYOUT, 1):
        patient = TruthPatient(pid, issuer, name)
        patients.append(patient)
        for s_index, ((date, time, description), series_list) in enumerate(studies, 1):
            study = TruthStudy(generate_uid(entropy_srcs=["kiosk-cd", pid, date]), date, description)
            patient.studies.append(study)
            for number, modality, series_description, sources in series_list:
                series = TruthSeries(generate_uid(entropy_srcs=["kiosk-cd", study.uid, str(number)]), number,
                                     modality, series_description)
                study.series.append(series)
                for i_index, source in enumerate(sources, 1):
                    ds = _source(source)
                    ds.SOPInstanceUID = generate_uid(entropy_srcs=["kiosk-cd", series.uid, str(i_index)])
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    _set_identity(ds, patient=(pid, issuer, name, birth, sex, charset),
                                  study=(study.uid, date, time, description, f"ACC{p_index}{s_index:02d}", str(s_index)),
                                  series=(series.uid, number, modality, series_description), instance=i_index)
                    relative = f"DICOM/PAT{p_index}/ST{s_index}/SE{number}/IM{i_index:05d}"
                    (root / relative).parent.mkdir(parents=True, exist_ok=True)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # the test files' odd values (UIDs too long): theirs
                        ds.save_as(root / relative, enforce_file_format=True)
                    series.files[str(ds.SOPInstanceUID)] = relative
                    series.transfer_syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
    run_dcmmkdir(root)
    return DicomCd(root, LABEL, patients)


def run_dcmmkdir(root: Path) -> None:
    """Index every file under ``root`` in ``root/DICOMDIR`` with DCMTK's dcmmkdir (fails the test if it fails)."""
    dcmmkdir = require_binary("dcmmkdir")
    result = subprocess.run([dcmmkdir, *DCMMKDIR, "+D", "DICOMDIR", "DICOM"], cwd=root, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _source(source: str):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    if source == "pdf":
        return _encapsulated_pdf()
    if source == "video":
        return _video()
    if "/" in source:
        path = Path(get_testdata_file("CT_small.dcm")).parent / source
    else:
        path = get_testdata_file(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as when writing them
        return dcmread(path)


def _set_identity(ds, *, patient, study, series, instance: int) -> None:
    pid, issuer, name, birth, sex, charset = patient
    if charset:
        ds.SpecificCharacterSet = charset
    elif "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, pid, birth, sex
    if issuer:
        ds.IssuerOfPatientID = issuer
    elif "IssuerOfPatientID" in ds:
        del ds.IssuerOfPatientID
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyDescription, ds.AccessionNumber, ds.StudyID = study
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality, ds.SeriesDescription = series
    ds.InstanceNumber = instance
    ds.ContentDate, ds.ContentTime = study[1], study[2]


def _new_file(sop_class: str, transfer_syntax: str):
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return ds


def _encapsulated_pdf():
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = _new_file(ENCAPSULATED_PDF, ExplicitVRLittleEndian)
    ds.DocumentTitle = "Referral letter"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = PDF + (b"\0" if len(PDF) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(PDF)
    ds.BurnedInAnnotation = "YES"
    ds.ConversionType = "SD"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "18748-4", "LN", "Diagnostic imaging report"
    ds.ConceptNameCodeSequence = [code]
    return ds


def _video():
    """A Video Endoscopic instance in MPEG-4 AVC: the reader reads headers only, so a short stand-in stream does."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG4HP41

    ds = _new_file(VIDEO_ENDOSCOPIC, MPEG4HP41)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_PARTIAL_420"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 64, 64, 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.PlanarConfiguration = 8, 8, 7, 0, 0
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 40
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" + bytes(60)])
    ds["PixelData"].VR = "OB"
    return ds
