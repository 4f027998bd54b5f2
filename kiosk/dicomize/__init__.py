"""Captures + study context -> standards-valid DICOM datasets (see docs/objects.md).

Public API: ``BuildOptions``, ``PerformedStep`` (the step a batch belongs to), ``Batch``, ``build_datasets``, ``write_dataset``,
``TS_CHOICES`` (the names of ``kiosk.transfer_syntaxes``); the identity of our implementation is in ``uids``.
"""

from kiosk.dicomize.batch import BuildOptions, PerformedStep
from kiosk.dicomize.builder import Batch, WriteError, build_datasets, write_dataset
from kiosk.dicomize.codecs import EncodeError
from kiosk.dicomize.image import PixelError
from kiosk.transfer_syntaxes import CHOICES as TS_CHOICES

__all__ = ["Batch", "BuildOptions", "EncodeError", "PerformedStep", "PixelError", "TS_CHOICES", "WriteError",
           "build_datasets", "write_dataset"]
