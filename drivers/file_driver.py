"""``file:PATH``: image, PDF and video files as a source, through ``drivers.file_reader.load_file`` and
``drivers.video_file.import_video``.

A file acts like a scanner with a feeder: ``acquire()`` gives its first
capture, ``batch()`` every capture it holds (pages of a PDF or TIFF; a video
file is one clip capture). Options: ``work_dir``, the folder on whose disk a
video is transcoded or copied (the session's folder: the session then takes
the file; default the kiosk's data folder), and ``video``, the ``[video]``
settings (a ``VideoConfig``).
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
        options = options or {}
        return FileSource(DeviceInfo(uri=f"file:{target}", name=os.path.basename(path), kind="file"), path,
                          work_dir=options.get("work_dir"), video=options.get("video"))


class FileSource(Device):
    """One file, read like a feeder: every page it holds, in order."""

    def __init__(self, info: DeviceInfo, path: str, work_dir: str | os.PathLike[str] | None = None,
                 video: Any = None) -> None:
        super().__init__(info)
        self.path = path
        self.work_dir = work_dir
        self.video = video

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

    def _clip(self, progress: ProgressCallback | None) -> Iterator[Capture]:
        """The video file as one clip capture, its file (a copy, or the transcoded clip) in a work folder
        that lasts until the capture has been taken (the caller's next step)."""
        from drivers.file_reader import FileLoadError
        from drivers.video_file import import_video, work_folder
        from kiosk.config import VideoConfig

        def transcoding(fraction: float) -> None:
            if progress:
                progress(Progress(0, fraction, f"converting the video to H.264: {fraction:.0%}"))

        with work_folder(self.work_dir or _default_work_dir()) as work:
            try:
                imported = import_video(self.path, work, self.video or VideoConfig(), copy=True,
                                        progress=transcoding, cancel=self._cancel)
            except FileLoadError:
                self.check_cancelled()  # cancelled while transcoding: said as for any source
                raise
            yield imported.capture

    def acquire(self, progress: ProgressCallback | None = None) -> Capture:
        return next(self.batch(progress))

    def batch(self, progress: ProgressCallback | None = None) -> Iterator[Capture]:
        from drivers.file_reader import is_video

        self._cancel.clear()
        if is_video(self.path):
            yield from self._clip(progress)
            return
        captures = self._load()
        for page, capture in enumerate(captures):
            self.check_cancelled()
            if progress:
                progress(Progress(page, 1.0, f"page {page + 1} of {len(captures)}"))
            yield capture


def _default_work_dir() -> str:
    import platformdirs

    return os.path.join(platformdirs.user_data_dir("kiosk", appauthor=False), "video-work")
