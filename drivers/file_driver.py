"""``file:PATH``: image and PDF files as a source, through ``drivers.file_reader.load_file``.

A file acts like a scanner with a feeder: ``acquire()`` gives its first
capture, ``batch()`` every capture it holds (pages of a PDF or TIFF).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Iterator, Mapping

from drivers.device import Capabilities, Device, DeviceInfo, Driver, Progress, ProgressCallback, Settings
from drivers.errors import NoDeviceError
from kiosk.capture import Capture, SourceKind


class FileDriver(Driver):
    scheme = "file"
    title = "file import"

    def discover(self) -> list[DeviceInfo]:
        return []  # files are named, not attached

    def open(self, target: str, options: Mapping[str, Any] | None = None) -> "FileSource":
        path = os.path.expanduser(target)
        if not os.path.isfile(path):
            raise NoDeviceError(f"no file {target!r}", "check the path")
        return FileSource(DeviceInfo(uri=f"file:{target}", name=os.path.basename(path), kind="file"), path)


class FileSource(Device):
    """One file, read like a feeder: every page it holds, in order."""

    def __init__(self, info: DeviceInfo, path: str) -> None:
        super().__init__(info)
        self.path = path

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def configure(self, settings: Settings) -> Settings:
        """Only dpi (for files that do not record it) and the film/photo presets apply to files."""
        self.settings = Settings(dpi=settings.dpi, film=settings.film, photo=settings.photo)
        return self.settings

    def _load(self) -> list[Capture]:
        from drivers.file_reader import load_file

        s = self.settings
        kind = SourceKind.DIGITIZED_FILM if s.film else SourceKind.SCANNED_IMAGE if s.photo else SourceKind.FILE_IMPORT
        captures = load_file(self.path, kind=kind)
        return [c if c.dpi or not s.dpi else replace(c, dpi=s.dpi) for c in captures]

    def acquire(self, progress: ProgressCallback | None = None) -> Capture:
        return next(self.batch(progress))

    def batch(self, progress: ProgressCallback | None = None) -> Iterator[Capture]:
        self._cancel.clear()
        captures = self._load()
        for page, capture in enumerate(captures):
            self.check_cancelled()
            if progress:
                progress(Progress(page, 1.0, f"page {page + 1} of {len(captures)}"))
            yield capture
