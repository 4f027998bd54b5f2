"""The errors drivers raise: one ``DriverError`` family, each naming the device and what to do."""

from __future__ import annotations

from kiosk.errors import KioskError


class DriverError(KioskError):
    """An acquisition failed; the message names the device and what to do."""


class DriverUnavailableError(DriverError):
    """The driver's optional dependency is not installed."""


class NoDeviceError(DriverError):
    """The device does not exist or is not attached."""


class DeviceBusyError(DriverError):
    """The device is in use by another program (or another window)."""


class PaperJamError(DriverError):
    """The document feeder jammed."""


class CoverOpenError(DriverError):
    """The scanner cover or feeder lid is open."""


class OutOfPaperError(DriverError):
    """The feeder is empty when a page was asked for."""


class DisconnectedError(DriverError):
    """The device or stream went away during use."""


class TimedOutError(DriverError):
    """The device stopped answering (a stalled stream, a hung scanner)."""


class CancelledError(DriverError):
    """The user cancelled; nothing partial is passed off as complete."""
