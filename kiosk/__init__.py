"""kiosk: a touch-friendly capture-to-DICOM station."""

__version__ = "0.1.0"
