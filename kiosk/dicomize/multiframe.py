"""Multi-frame Secondary Capture: one object for several pages or video frames.

The SOP class follows the pixels: Single Bit (1-bit, stored uncompressed),
Grayscale Byte, Grayscale Word (9-16 bits) or True Color. Frames of a video
(captures with a frame rate) step by Frame Time (Cine module); pages step by
Page Number Vector.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import (
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
)
from pydicom.valuerep import format_number_as_ds

from kiosk.capture import Capture
from kiosk.dicomize import modules
from kiosk.dicomize.batch import BatchState
from kiosk.dicomize.image import PixelPlan, plan_pixels, store_pixels
from kiosk.dicomize.sc import image_dataset


def sop_class_of(plan: PixelPlan) -> str:
    if plan.samples == 3:
        return MultiFrameTrueColorSecondaryCaptureImageStorage
    if plan.bits_allocated == 1:
        return MultiFrameSingleBitSecondaryCaptureImageStorage
    if plan.bits_allocated == 8:
        return MultiFrameGrayscaleByteSecondaryCaptureImageStorage
    return MultiFrameGrayscaleWordSecondaryCaptureImageStorage


def build_multiframe(batch: BatchState, captures: list[Capture], instance_number: int) -> Dataset:
    """One multi-frame SC object from ``captures`` (same size and colour type), in order."""
    options = batch.options
    # Multi-frame SC IODs allow MONOCHROME2 only (PS3.3 A.8.3-A.8.4): monochrome1 does not apply.
    plan, ts_name = plan_pixels(captures, options.transfer_syntax, monochrome1=False, single_bit=True)
    first = captures[0]
    ds = image_dataset(batch, first, instance_number, plan)
    ds.NumberOfFrames = len(captures)
    if first.frame_rate:
        ds.FrameTime = format_number_as_ds(1000.0 / first.frame_rate)
        ds.RecommendedDisplayFrameRate = max(1, round(first.frame_rate))
        ds.FrameIncrementPointer = Tag("FrameTime")
    else:
        ds.PageNumberVector = list(range(1, len(captures) + 1))
        ds.FrameIncrementPointer = Tag("PageNumberVector")
    if plan.samples == 1 and plan.bits_allocated > 1:
        ds.PresentationLUTShape = "IDENTITY"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
    modules.add_sop_common(ds, batch, sop_class_of(plan))
    store_pixels(ds, plan, ts_name, options.j2k_ratio, options.jpeg_quality)
    return ds
