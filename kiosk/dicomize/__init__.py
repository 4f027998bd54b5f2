"""Captures + study context -> standards-valid DICOM datasets (see docs/objects.md).

Public API: ``BuildOptions``, ``Batch``, ``build_datasets``, ``write_dataset``,
``TS_CHOICES``; the identity of our implementation is in ``uids``.
"""

from kiosk.dicomize.batch import BuildOptions
from kiosk.dicomize.builder import Batch, WriteError, build_datasets, write_dataset
from kiosk.dicomize.codecs import TS_CHOICES, EncodeError
from kiosk.dicomize.image import PixelError

__all__ = ["Batch", "BuildOptions", "EncodeError", "PixelError", "TS_CHOICES", "WriteError",
           "build_datasets", "write_dataset"]
