"""Touch UI and video clips: the recording timer, a clip kept with its own patient whatever ends the
recording, the clip badge, playback and trimming on the Review screen, and a clip across a restart."""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kiosk.study import StudyContext
from kiosk.ui.strings import T
from kiosk.ui.text import clock
from tests.ui.test_ui_flow import demo, start_session_by_barcode  # noqa: F401 (fixture)

FPS = 10  # the demo camera's rate here: little to encode on shared cores


def with_extra(config, section, **values):
    return replace(config, **{section: replace(getattr(config, section), **values)})


def live_camera(ui, code):
    """A session for ``code`` with the demo camera (test pattern at ``FPS``) live; the Acquire screen."""
    from drivers.device import DeviceInfo

    ui.tap(start_session_by_barcode(ui, code).ids.yes)
    acquire = ui.screen("acquire")
    ui.wait(lambda: acquire.devices, what="devices")
    acquire.select(DeviceInfo(uri=f"demo:camera?fps={FPS}", name="Demo camera", kind="camera"))
    ui.wait(lambda: acquire.live and acquire.frames_shown > 3, what="the live preview")
    return acquire


def record(ui, acquire, limit_text):
    ui.tap(acquire.ids.record)
    ui.wait(lambda: f"/ {limit_text}" in acquire.clip_time and "free" in acquire.clip_time
            and acquire.ids.clip_timer.opacity == 1, what="the recording timer")
    assert acquire.ids.record.text == T["stop_clip"] and not acquire.ids.scan.disabled  # stills still possible


def test_a_clip_stops_at_its_limit_then_plays_trims_and_survives_a_restart(kiosk_ui, demo, monkeypatch):
    from kiosk.video.recorder import Recorder
    from kiosk.video.streams import keyframe_times

    # The screen says what the recorder says of frames it left out (tests/drivers/test_recorder.py makes it leave some).
    lost = "3 of 43 frame(s) were left out of the clip: the kiosk could not keep up with the source"
    monkeypatch.setattr(Recorder, "dropped_note", property(lambda _self: lost))
    peers, config = demo
    config = with_extra(config, "acquisition", max_clip_seconds=4.0)
    ui = kiosk_ui(config, demo=peers)
    acquire = live_camera(ui, "A1005")
    record(ui, acquire, "0:04")
    assert acquire.clip_warning  # within 10 s of the limit: the timer is amber
    ui.tap(acquire.ids.scan)  # a still while the clip records
    ui.wait(lambda: acquire.count == 1 and not acquire.capturing, what="the still")
    assert acquire.recording and acquire.busy
    # It stops by itself at [acquisition] max_clip_seconds; the preview never stopped.
    ui.wait(lambda: not acquire.recording and acquire.count == 2, timeout=30, what="the clip at its limit")
    assert acquire.live and not acquire.busy and acquire.ids.clip_timer.opacity == 0
    session = ui.app.session
    clip = session.captures[1]
    assert clip.is_clip and clip.encoded_path.parent == session.folder and clip.encoded_path.is_file()
    assert 4 * FPS - 2 <= clip.video.frames <= 4 * FPS and clip.video.codec == "h264"
    said = T["clip_added"].format(duration=clock(clip.video.duration), frames=clip.video.frames)
    said = T["clip_added_because"].format(added=said, why="the recording stopped at its limit of 0:04")
    assert acquire.status == T["clip_left_out"].format(added=said, lost=lost)
    assert not list(session.folder.glob("clip-*"))  # moved in under the session's own name

    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 2, what="two thumbnails")
    badges = [t.clip for t in reversed(review.ids.thumbs.children)]
    assert badges == ["", T["clip_badge"].format(duration=clock(clip.video.duration))]
    assert not review.selected_clip and review.ids.player.height == 0  # the still: no player
    review.select(1)
    ui.wait(lambda: review.selected_clip and review.ids.player.height > 0, what="the clip selected")
    assert review.ids.rotate.disabled and review.ids.crop_button.disabled and not review.ids.delete.disabled
    assert clip.video.describe() in review.clip_info and f"{clip.video.frames} frames" in review.ids.clip_info.text

    # Playback: frames decoded off the UI thread at the clip's pace, the position following.
    ui.tap(review.ids.play)
    ui.wait(lambda: review.playing and review.position > 1.3, timeout=10, what="playback")
    ui.tap(review.ids.play)  # Pause
    ui.wait(lambda: not review.playing, what="the pause")
    player = review._player
    assert player.shown > 5 and review.ids.large.texture is review._texture
    keyframes = keyframe_times(clip.video)
    assert len(keyframes) >= 3, keyframes  # about one a second
    at = review.position
    review.set_start()  # snaps to the keyframe at or before the position
    assert review.trim_start == max(k for k in keyframes if k <= at + 1e-3) > 0
    start = review.trim_start
    target = next(k for k in keyframes if k > start + 0.5) - 0.2
    review.seek(target)
    ui.wait(lambda: player.latest.time >= target - 0.06 and review.position == player.latest.time, what="the frame sought")
    at = review.position
    review.set_end()  # the cut ends just before the next keyframe: the frame shown is kept
    assert review.trim_end == min(k for k in keyframes if k > at + 1e-3) and review.trimmable
    assert not review.ids.trim.disabled
    end = review.trim_end
    assert review.trim_text == T["trim_keep"].format(start=clock(start, True), end=clock(end, True),
                                                     length=clock(end - start, True))
    review.seek(start)
    ui.tap(review.ids.play)
    ui.wait(lambda: review.playing and review.position > start + 0.3, timeout=10, what="playing the kept part")
    ui.screenshot("review_clip")
    before = clip.encoded_path

    ui.tap(review.ids.trim)
    ui.wait(lambda: not review.busy and session.captures[1].video.frames < clip.video.frames, timeout=30,
            what="the trimmed clip")
    trimmed = session.captures[1]
    assert trimmed.is_clip and abs(trimmed.video.frames - round((end - start) * FPS)) <= 1, trimmed.video
    assert not before.exists() and trimmed.encoded_path.parent == session.folder
    assert not list(session.folder.glob("trim-*")) and not review.trimmable
    assert review.status == T["trimmed"].format(duration=clock(trimmed.video.duration, tenths=True),
                                                frames=trimmed.video.frames)

    # A restart: the new app resumes the kept session and finds the clip, its badge, its playback.
    folder = session.folder
    ui.app.stop()
    ui = kiosk_ui(config, demo=peers)
    ui.app.resume_session(folder)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 2, what="the kept session's thumbnails")
    assert review.ids.thumbs.children[0].clip == T["clip_badge"].format(duration=clock(trimmed.video.duration))
    review.select(1)
    ui.wait(lambda: review.selected_clip and review._player is not None, what="the clip selected")
    ui.tap(review.ids.play)
    ui.wait(lambda: review._player.shown > 3, timeout=10, what="playback after the restart")


def test_ending_the_session_while_recording_keeps_the_clip_with_its_own_patient(kiosk_ui, demo, monkeypatch):
    from kiosk.ui.widgets.dialogs import MessageCard
    from kiosk.video.recorder import Recorder

    peers, config = demo
    ui = kiosk_ui(with_extra(config, "acquisition", max_clip_seconds=60.0), demo=peers)
    acquire = live_camera(ui, "A1001")

    # Too little disk space left: refused with the recorder's sentence, nothing recorded.
    monkeypatch.setattr(Recorder, "free_space", staticmethod(lambda _folder: 0))
    ui.tap(acquire.ids.record)
    ui.wait(lambda: not acquire.recording and "recording refused" in acquire.status, what="the refusal")
    assert acquire.count == 0 and not acquire.busy and not ui.app.keeping
    monkeypatch.undo()

    record(ui, acquire, "1:00")
    assert not acquire.clip_warning and ui.app.keeping and ui.screen("review").ids.send.disabled
    ui.screenshot("clip")
    first = ui.app.session
    ui.wait(lambda: acquire._recording.recorder.frames > 5, what="a few frames recorded")
    # The patient changes while the clip is still being finished: it stays with the first one.
    ui.app.end_session()
    ui.app.start_session(StudyContext(patient_name="OTHER^PATIENT", patient_id="OTHER1"))
    second = ui.app.session
    assert not acquire.recording and not acquire.busy and not ui.app.keeping
    message = ui.wait(lambda: ui.modal(MessageCard), timeout=30, what="where the clip went")
    assert message.body == T["clip_kept_elsewhere"]
    assert len(second) == 0 and not list(second.folder.glob("*.clip*"))
    kept = ui.app.store.load(first.folder)
    [clip] = kept.captures
    assert clip.is_clip and clip.encoded_path.is_file() and clip.video.frames > 5
    assert kept.state == "abandoned"  # ended once the clip was in it, kept for the Outbox


@pytest.mark.skipif(importlib.util.find_spec("kiosk.dicomize.video") is None,
                    reason="waits for the video IODs (kiosk.dicomize.video)")
def test_a_recorded_clip_is_sent_as_one_video_object(kiosk_ui, demo, dciodvfy, monkeypatch):
    from pydicom import dcmread

    from kiosk.outbox.spool import Spool

    linked = []  # the session's clip is linked into the outbox, not copied, then written out for sending
    put_linked = Spool.put_linked
    monkeypatch.setattr(Spool, "put_linked", lambda self, *a: linked.append(put_linked(self, *a)) or linked[-1])
    peers, config = demo
    ui = kiosk_ui(with_extra(config, "acquisition", max_clip_seconds=1.0), demo=peers)
    acquire = live_camera(ui, "A1005")
    ui.tap(acquire.ids.record)
    ui.wait(lambda: not acquire.recording and acquire.count == 1, timeout=30, what="the recorded clip")
    clip, modality = ui.app.session.captures[0], ui.app.session.context.modality
    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 1, what="the clip thumbnail")
    ui.tap(review.ids.send)
    send = ui.screen("send")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=90, what="the send result")
    assert send.result == T["send_result_commit"].format(done=1, total=1, destination="demo-pacs")
    [entry] = linked
    assert entry is not None and not entry.sha256
    [path] = peers.received.glob("*.dcm")
    ds = dcmread(path)
    # By the order's modality: Video Endoscopic for ES, Video Photographic for XC, else Multi-frame
    # True Color SC; each holding the recorded H.264 stream as it is.
    expected = {"ES": "1.2.840.10008.5.1.4.1.1.77.1.1.1", "XC": "1.2.840.10008.5.1.4.1.1.77.1.4.1"}
    assert ds.SOPClassUID == expected.get(modality, "1.2.840.10008.5.1.4.1.1.7.4") and ds.PatientID == "DEMO005"
    assert ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.104")
    assert int(ds.NumberOfFrames) == clip.video.frames
    dciodvfy(path)


# -- without the UI: the recording's worker and the app's hold on a station -------------------
class FakeRecorder:
    """What ``ClipRecording`` uses of a ``kiosk.video.recorder.Recorder``: a file it "recorded"."""

    dropped_note = ""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stopped = threading.Event()
        self.reason = self.message = ""

    def start(self) -> None:
        (self.folder / "clip-1.mp4").write_bytes(b"not really a video")

    def stop(self):
        from kiosk.capture import Capture, EncodedFormat, SourceKind
        from kiosk.video.facts import VideoFacts

        return Capture(kind=SourceKind.VIDEO_FRAME, pixels=np.zeros((4, 4, 3), np.uint8),
                       encoded_format=EncodedFormat.VIDEO, encoded_path=self.folder / "clip-1.mp4",
                       video=VideoFacts("h264", 4, 4, 25.0, 25, 1.0))


class ClosedStation:
    session = None

    def add_clip(self, clip):
        from kiosk.station import StationClosed

        raise StationClosed("this session has ended: no more images can be added to it")


def test_a_clip_its_session_cannot_take_is_deleted_and_said(tmp_path):
    from kiosk.ui.recording import ClipRecording

    outcomes, released = [], threading.Event()
    recording = ClipRecording(lambda: FakeRecorder(tmp_path), ClosedStation(), outcomes.append, released.set)
    recording.begin()
    recording.finish()
    assert recording.wait(10) and released.is_set()
    [outcome] = outcomes
    assert outcome.started and outcome.clip is None and "has ended" in outcome.error.message
    assert not (tmp_path / "clip-1.mp4").exists()  # never left for another session to pick up


def test_frames_left_out_are_said_with_the_clip(tmp_path):
    from kiosk.ui.recording import ClipRecording

    class Behind(FakeRecorder):
        dropped_note = "12 of 90 frame(s) were left out of the clip"

    class OpenStation:
        session, added = None, []

        def add_clip(self, clip):
            self.added.append(clip)

    outcomes, released, station = [], threading.Event(), OpenStation()
    recording = ClipRecording(lambda: Behind(tmp_path), station, outcomes.append, released.set)
    recording.begin()
    recording.finish()
    assert recording.wait(10) and released.is_set()
    [outcome] = outcomes
    assert outcome.clip is station.added[0] and outcome.lost == Behind.dropped_note and outcome.error is None


def test_a_refused_recording_releases_its_station(tmp_path):
    from kiosk.ui.recording import ClipRecording
    from kiosk.video.facts import VideoError

    class Refusing(FakeRecorder):
        def start(self):
            raise VideoError("recording refused: the source gives no picture")

    outcomes, released = [], threading.Event()
    recording = ClipRecording(lambda: Refusing(tmp_path), ClosedStation(), outcomes.append, released.set)
    recording.begin()
    assert recording.wait(10) and released.is_set()
    assert not outcomes[0].started and outcomes[0].error.message.startswith("recording refused")
