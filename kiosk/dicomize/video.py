"""Video and visible-light objects: clips as H.264/HEVC objects, stills from video sources as VL images.

``family`` picks the IODs from ``[video] iod`` and the modality: ES -> Video Endoscopic (clips) and VL
Endoscopic (stills), XC -> Video Photographic and VL Photographic, GM -> Video Microscopic and VL
Microscopic, any other -> Multi-frame True Color SC (clips) and SC (stills, ``kiosk.dicomize.sc``).
A clip's stream is stored as it is (PS3.5 8.2.7-8.2.11: one fragment, an empty Basic Offset Table),
made from the clip's file while the object is written, never held in memory; a clip whose stream is
larger than ``max_object_bytes`` becomes consecutive objects of the series, each starting at an IDR
picture (``kiosk.video.elementary``).
"""

from __future__ import annotations

from typing import Iterator

from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    VideoEndoscopicImageStorage,
    VideoMicroscopicImageStorage,
    VideoPhotographicImageStorage,
    VLEndoscopicImageStorage,
    VLMicroscopicImageStorage,
    VLPhotographicImageStorage,
)
from pydicom.valuerep import format_number_as_ds

from kiosk.capture import Capture, SourceKind
from kiosk.dicomize import modules
from kiosk.dicomize.batch import BatchState
from kiosk.dicomize.codecs import set_file_meta, set_lossy
from kiosk.dicomize.image import PixelError, add_general_image, add_image_pixel, plan_pixels, prior_history, store_pixels

ENDOSCOPIC, PHOTOGRAPHIC, MICROSCOPIC = "endoscopic", "photographic", "microscopic"
SECONDARY_CAPTURE = "secondary-capture"
# PS3.3 A.32: each VL IOD takes one modality (ES, GM, XC); GM objects are the microscopic ones.
BY_MODALITY = {"ES": ENDOSCOPIC, "XC": PHOTOGRAPHIC, "GM": MICROSCOPIC}
CLIP_CLASS = {ENDOSCOPIC: VideoEndoscopicImageStorage, PHOTOGRAPHIC: VideoPhotographicImageStorage,
              MICROSCOPIC: VideoMicroscopicImageStorage,
              SECONDARY_CAPTURE: MultiFrameTrueColorSecondaryCaptureImageStorage}
STILL_CLASS = {ENDOSCOPIC: VLEndoscopicImageStorage, PHOTOGRAPHIC: VLPhotographicImageStorage,
               MICROSCOPIC: VLMicroscopicImageStorage}
# PS3.3 C.8.12.1: the video IODs need the anatomic region (one item); the kiosk does not know it, so the
# item says "a body structure" (SNOMED CT's root of anatomy) rather than guess one.
UNKNOWN_REGION = ("123037004", "SCT", "Anatomical or acquired body structure")
#: PS3.5 A.4: an item holds at most 2^32 - 2 bytes; the header needs room below max_object_bytes too.
FRAGMENT_MAX = 2**32 - 2
HEADER_ROOM = 64 * 1024
COPY_CHUNK = 1 << 20
# pydicom copies a buffered value (a stream) into the file in reads of this size: its 8 KB default
# made writing an object take twice as long.
pydicom_config.settings.buffered_read_size = max(pydicom_config.settings.buffered_read_size, COPY_CHUNK)


def family(batch: BatchState) -> str:
    """The IOD family of the batch's image series: ``[video] iod``, or by its modality under "auto"."""
    chosen = batch.options.video_iod
    return chosen if chosen != "auto" else BY_MODALITY.get(batch.image_modality, SECONDARY_CAPTURE)


def is_vl_still(batch: BatchState, capture: Capture) -> bool:
    """Whether a still becomes a VL image: a frame of a live video source in an endoscopic,
    photographic or microscopic series (scanned documents there stay Secondary Capture)."""
    return capture.kind is SourceKind.VIDEO_FRAME and not capture.is_clip and family(batch) != SECONDARY_CAPTURE


def build_still(batch: BatchState, capture: Capture, instance_number: int) -> Dataset:
    """One VL Endoscopic, Photographic or Microscopic image (``is_vl_still``): 8-bit gray or colour, JPEG
    passthrough kept (YBR_FULL_422) as for Secondary Capture; the VL IODs know no MONOCHROME1."""
    options = batch.options
    plan, ts_name = plan_pixels([capture], options.transfer_syntax)
    if plan.bits_allocated != 8:
        raise PixelError(f"a {plan.bits_stored}-bit still cannot be a VL image (8 bits only)",
                         "set [video] iod = secondary-capture for such sources")
    kind = family(batch)
    ds = _image_dataset(batch, capture, instance_number, kind)
    add_image_pixel(ds, plan)
    modules.add_sop_common(ds, batch, STILL_CLASS[kind])
    store_pixels(ds, plan, ts_name, options.j2k_ratio, options.jpeg_quality)
    return ds


def build_clip(batch: BatchState, capture: Capture) -> Iterator[Dataset]:
    """The objects of one clip (``Capture.is_clip``), in order, numbered as they are built.

    Each object's pixel data is an ``ElementaryStream``: made from the clip's file while the object
    is written (each time it is written), so the clip must stay in place until then.
    """
    from kiosk.video.elementary import ClipPixelData, ElementaryStream, parts
    from kiosk.video.probe import PIX_10BIT_420, syntax_for, why_not

    facts, path = capture.video, capture.encoded_path
    syntax = syntax_for(facts)
    if syntax is None:
        raise PixelError(f"{path.name}: {why_not(facts)} cannot be stored as it is",
                         "convert the clip first (kiosk convert and the Files source transcode such files)")
    kind = family(batch)
    ten_bit = facts.pix_fmt in PIX_10BIT_420
    limit = min(max(batch.options.max_object_bytes - HEADER_ROOM, 1), FRAGMENT_MAX)
    ranges = parts(path, limit, facts)
    history = prior_history([capture])
    for number, (first, end, size) in enumerate(ranges, 1):
        stream = ElementaryStream(path, first, end, size)
        size = stream.size
        if size > FRAGMENT_MAX:
            raise PixelError(f"{path.name}: frames {first}-{end - 1} between two IDR pictures hold {size} bytes, "
                             "more than one DICOM fragment can", "record or convert with shorter keyframe intervals")
        ds = _image_dataset(batch, capture, batch.next_image_number(), kind)
        _add_cine(ds, facts.frame_rate, end - first, first)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = syntax.rgb_as
        ds.Rows, ds.Columns = facts.height, facts.width
        # PS3.5 8.2.11: as the stream codes its samples (HEVC Main 10: 10 bits in 16).
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = (16, 10, 9) if ten_bit else (8, 8, 7)
        ds.PixelRepresentation = 0
        ds.PlanarConfiguration = 0
        if len(ranges) > 1:
            ds.ImageComments = f"part {number} of {len(ranges)}"
        if kind != SECONDARY_CAPTURE:
            ds.AnatomicRegionSequence = Sequence([_code(*UNKNOWN_REGION)])
        raw = facts.width * facts.height * 3 * (2 if ten_bit else 1) * (end - first)
        set_lossy(ds, [*history, (raw / max(size, 1), syntax.method)])
        modules.add_sop_common(ds, batch, CLIP_CLASS[kind])
        ds.PixelData = ClipPixelData(stream)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        set_file_meta(ds, syntax.uid)
        yield ds


def _image_dataset(batch: BatchState, capture: Capture, instance_number: int, kind: str) -> Dataset:
    """Patient to Acquisition Context: every module but the pixels' (and SOP Common)."""
    ds = Dataset()
    modules.add_patient_and_study(ds, batch)
    modules.add_series(ds, batch, batch.image_series_uid, batch.image_series_number, batch.image_modality,
                       capture.kind)
    modules.add_general_equipment(ds, batch)
    if kind == SECONDARY_CAPTURE:
        # PS3.3 C.8.6.1: DV digitized video (a card, a camera), DI digital interface (a file made elsewhere).
        modules.add_sc_equipment(ds, batch, capture, "DV" if capture.kind is SourceKind.VIDEO_FRAME else "DI")
        add_general_image(ds, capture, instance_number, batch.burned_in(capture))
    else:
        # Acquired here from the device's signal: original; a file made elsewhere: derived from it.
        ds.ImageType = ["ORIGINAL" if capture.kind is SourceKind.VIDEO_FRAME else "DERIVED", "PRIMARY"]
        ds.InstanceNumber = instance_number
        ds.PatientOrientation = ""
        ds.ImageLaterality = "U"
        ds.BurnedInAnnotation = "YES" if batch.burned_in(capture) else "NO"
        ds.AcquisitionContextSequence = Sequence()  # Type 2: nothing known of the acquisition context
    modules.add_capture_times(ds, capture, secondary_capture=kind == SECONDARY_CAPTURE)
    return ds


def _add_cine(ds: Dataset, frame_rate: float, frames: int, first: int) -> None:
    """Multi-frame and Cine modules: ``frames`` at ``frame_rate``, the part starting at frame ``first``."""
    frame_time = 1000.0 / frame_rate
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.FrameTime = format_number_as_ds(frame_time)
    ds.CineRate = ds.RecommendedDisplayFrameRate = max(1, round(frame_rate))
    ds.ActualFrameDuration = max(1, round(frame_time))
    ds.FrameDelay = format_number_as_ds(round(first * frame_time, 3))  # from Content Time: where this part starts


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item
