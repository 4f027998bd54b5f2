"""Video files (MP4, MOV, M4V, MKV, WebM, AVI) -> one clip capture, for ``kiosk convert`` and the ``file:`` source.

A stream that a DICOM video transfer syntax takes as it is (``kiosk.video.probe.syntax_for``: H.264 High
up to Level 4.2, HEVC Main/Main 10 up to 5.1) is passed through, its bytes kept; any other (H.264 4:4:4
or 10-bit, VP9, MPEG-4 Part 2 ..., a phone's portrait video that players turn upright, a file whose edit
list hides frames) is transcoded once to H.264 High (``kiosk.video.streams.transcode``) into a work folder.
The work folder is on a real disk, beside the output or in the session's folder (a clip of an hour does
not fit in a RAM /tmp), and is removed afterwards (``work_folder``).
Every failure is a ``FileLoadError`` naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from kiosk.capture import Capture, SourceKind
from kiosk.errors import KioskError
from kiosk.private import FILE_MODE, private_dir, unused_name

if TYPE_CHECKING:
    from kiosk.config import VideoConfig
    from kiosk.video.facts import VideoFacts

# Lossy Image Compression Method (PS3.3 C.7.6.1.1.5.1) of a source transcoded: the loss it already had.
METHODS = {"h264": "ISO_14496_10", "hevc": "ISO_23008_2", "mjpeg": "ISO_10918_1", "mpeg2video": "ISO_13818_2",
           "mpeg1video": "ISO_13818_2", "jpeg2000": "ISO_15444_1"}
LOSSLESS = {"ffv1", "rawvideo", "huffyuv", "ffvhuff", "utvideo", "png", "qtrle", "v210", "v410", "r210", "magicyuv"}


@dataclass(frozen=True)
class ImportedVideo:
    """The clip capture of a video file and what was done to it, for people:
    "passed through: H.264 High 4.1, ..." or "transcoded: VP9 Profile 0 (...) -> H.264 High 4.1, ..."."""

    capture: Capture
    note: str
    transcoded: bool


@contextlib.contextmanager
def work_folder(base: str | os.PathLike[str]) -> Iterator[Path]:
    """A private (0700) temporary folder in ``base`` for one import's transcoded file; removed on leaving,
    with whatever is still in it (a clip the session took has been moved out by then)."""
    base = Path(base)
    try:
        private_dir(base)
        folder = Path(tempfile.mkdtemp(prefix=".kiosk-video-", dir=base))
    except OSError as exc:
        raise KioskError(f"{base}: cannot make a work folder for video files there ({exc.strerror})",
                         "check that the folder is writable") from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def import_video(path: str | os.PathLike[str], work_dir: str | os.PathLike[str], video: "VideoConfig",
                 kind: SourceKind = SourceKind.FILE_IMPORT, copy: bool = False,
                 progress: Callable[[float], None] | None = None,
                 cancel: threading.Event | None = None) -> ImportedVideo:
    """The clip capture of the video file ``path``: the file itself when it conforms, else a transcoded copy
    in ``work_dir``. ``copy``: a conforming file is copied into ``work_dir`` too, so that whoever takes the
    capture (a session moving its file) never touches the original. ``progress``/``cancel``: of the
    transcoding. Raises ``FileLoadError``."""
    from drivers.file_reader import FileLoadError
    from kiosk.video.probe import probe, syntax_for, why_not
    from kiosk.video.streams import clip_capture, playback_changes, transcode

    path = Path(path)
    try:
        facts = probe(path)
        acquired = dt.datetime.fromtimestamp(path.stat().st_mtime)
        changes = playback_changes(path)
        if syntax_for(facts) is not None and not changes:
            kept = path
            if copy:
                kept = unused_name(Path(work_dir) / path.name)
                shutil.copyfile(path, kept)
                os.chmod(kept, FILE_MODE)
            capture = clip_capture(kept, kind, source=str(path), facts=facts)  # a copy has the same facts
            return ImportedVideo(replace(capture, acquired_at=acquired), f"passed through: {facts.describe()}", False)
        target = unused_name(Path(work_dir) / f"{path.stem}.mp4")
        result = transcode(path, target, video, progress=progress, cancel=cancel)
        capture = clip_capture(target, kind, source=str(path), metadata=_lossy_history(facts), facts=result)
        note = f"transcoded: {why_not(facts) or changes} -> {result.describe()}"
        return ImportedVideo(replace(capture, acquired_at=acquired), note, True)
    except KioskError as error:
        # The video module names the file by its name; the loader's messages by the path given.
        problem = error.message
        for name in (f"{path}: ", f"{path.name}: "):
            problem = problem.removeprefix(name)
        raise FileLoadError(path, problem, error.hint) from None
    except OSError as exc:
        raise FileLoadError(path, f"cannot be read or copied ({exc.strerror})",
                            "check its permissions and the free disk space") from None


def _lossy_history(facts: "VideoFacts") -> dict:
    """The source's own lossy step, which the transcoded clip has been through before its H.264 step."""
    if facts.codec in LOSSLESS:
        return {}
    ratio = None
    if facts.bit_rate > 0 and facts.frame_rate > 0:
        ratio = round(facts.width * facts.height * 3 * 8 * facts.frame_rate / facts.bit_rate, 2)
    return {"lossy_history": [[ratio, METHODS.get(facts.codec)]]}
