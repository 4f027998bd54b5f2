"""Secondary Capture Image Storage: one single-frame object per capture."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from kiosk.capture import Capture
from kiosk.dicomize import modules
from kiosk.dicomize.batch import BatchState
from kiosk.dicomize.image import PixelPlan, add_general_image, add_image_pixel, plan_pixels, store_pixels


def image_dataset(batch: BatchState, capture: Capture, instance_number: int, plan: PixelPlan) -> Dataset:
    """The modules every SC image shares (single- and multi-frame), described by its first capture."""
    ds = Dataset()
    modules.add_patient_and_study(ds, batch)
    modules.add_series(ds, batch, batch.image_series_uid, batch.image_series_number, batch.image_modality,
                       capture.kind)
    modules.add_equipment(ds, batch, capture)
    add_general_image(ds, capture, instance_number, batch.burned_in(capture))
    modules.add_capture_times(ds, capture)
    add_image_pixel(ds, plan)
    return ds


def build_sc(batch: BatchState, capture: Capture, instance_number: int) -> Dataset:
    """One SC image: 8-bit gray/RGB, 16-bit gray (MONOCHROME1 on request, 1-bit as 8-bit)."""
    options = batch.options
    plan, ts_name = plan_pixels([capture], options.transfer_syntax, options.monochrome1)
    ds = image_dataset(batch, capture, instance_number, plan)
    modules.add_sop_common(ds, batch, SecondaryCaptureImageStorage)
    store_pixels(ds, plan, ts_name, options.j2k_ratio, options.jpeg_quality)
    return ds
