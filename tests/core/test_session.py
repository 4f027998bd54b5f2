"""kiosk.session: persistence on every change, reopen after a crash, finish/abandon/discard."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.errors import KioskError
from kiosk.session import ABANDONED, OPEN, SessionStore
from kiosk.study import StudyContext
from tests.support.video import clip_of, make_video

CONTEXT = StudyContext(patient_name="MÜLLER^JÜRGEN", patient_id="PID100", accession="ACC100")


def page(value: int, shape=(40, 30)) -> Capture:
    return Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.full(shape, value, np.uint8), dpi=300.0, source="demo:scanner")


def test_every_change_is_on_disk_and_reopens(tmp_path):
    store = SessionStore(tmp_path)
    session = store.start(CONTEXT)
    session.add(page(1))
    session.add(page(2))
    jpeg = Capture(SourceKind.VIDEO_FRAME, encoded=b"\xff\xd8fake\xff\xd9", encoded_format=EncodedFormat.JPEG,
                   metadata={"fps": 30, "handle": object()})
    session.add(jpeg)
    session.move(2, 0)
    session.replace(1, page(9, (30, 40)))
    session.set_options(series_description="Consent", multiframe=True)
    # A "crash": nothing is closed; a new store reads the folder back.
    again = SessionStore(tmp_path).load(session.folder)
    assert again.context == CONTEXT
    assert [c.kind for c in again.captures] == [SourceKind.VIDEO_FRAME, SourceKind.SCANNED_DOCUMENT,
                                                 SourceKind.SCANNED_DOCUMENT]
    assert again.captures[0].encoded == jpeg.encoded and again.captures[0].metadata == {"fps": 30}
    assert again.captures[1].pixels.shape == (30, 40) and again.captures[1].pixels[0, 0] == 9
    assert again.captures[2].pixels[0, 0] == 2 and again.captures[2].dpi == 300.0
    assert again.series_description == "Consent" and again.multiframe
    assert again.state == OPEN
    # Replaced and moved items leave no stray files behind.
    files = {p.name for p in session.folder.iterdir()}
    assert files == {"session.json"} | {f"{i.id}.npy" for i in again.items if i.capture.pixels is not None} \
        | {f"{again.items[0].id}.bin"}


def test_delete_removes_files(tmp_path):
    session = SessionStore(tmp_path).start(CONTEXT)
    first = session.add(page(1))
    session.add(page(2))
    session.delete(0)
    assert not (session.folder / f"{first.id}.npy").exists()
    assert len(SessionStore(tmp_path).load(session.folder)) == 1


def test_abandon_keeps_and_finish_removes(tmp_path):
    store = SessionStore(tmp_path)
    kept = store.start(CONTEXT)
    kept.add(page(1))
    kept.abandon()
    empty = store.start(CONTEXT)
    empty.abandon()  # nothing to keep
    done = store.start(CONTEXT)
    done.add(page(3))
    done.finish()
    summaries = store.summaries()
    assert [s["folder"] for s in summaries] == [kept.folder]
    assert summaries[0]["state"] == ABANDONED and summaries[0]["count"] == 1
    resumed = store.load(kept.folder)
    resumed.resume()
    assert store.summaries()[0]["state"] == OPEN


def test_damaged_session_is_a_people_error(tmp_path):
    session = SessionStore(tmp_path).start(CONTEXT)
    (session.folder / "session.json").write_text("{broken")
    with pytest.raises(KioskError, match="damaged"):
        SessionStore(tmp_path).load(session.folder)


def test_manifest_keeps_unicode_and_no_temp_files(tmp_path):
    session = SessionStore(tmp_path).start(CONTEXT)
    session.add(page(1))
    data = json.loads((session.folder / "session.json").read_text(encoding="utf-8"))
    assert data["context"]["patient_name"] == "MÜLLER^JÜRGEN"
    assert not list(session.folder.glob("*.tmp"))


def test_label_has_no_patient_name(tmp_path):
    session = SessionStore(tmp_path).start(CONTEXT)
    assert "MÜLLER" not in session.label() and "PID100" in session.label()


def test_saves_from_several_threads_at_once_all_land_and_the_newest_manifest_wins(tmp_path):
    # The touch UI adds pages and edits from worker threads: one shared temporary name made one
    # thread's rename fail (FileNotFoundError) and could leave an older manifest on disk.
    import threading

    session = SessionStore(tmp_path).start(CONTEXT)
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            for i in range(5):
                session.add(page(n * 10 + i))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(SessionStore(tmp_path).load(session.folder).items) == 30
    assert not list(session.folder.glob("*.tmp"))


def test_a_clip_moves_into_the_session_survives_a_restart_and_is_replaced_whole(tmp_path):
    source = make_video(tmp_path, seconds=0.4, name="recorded.mp4")
    data = source.read_bytes()
    store = SessionStore(tmp_path / "sessions")
    session = store.start(StudyContext(patient_name="CLIP^TEST", patient_id="C1"))
    session.add_clip(clip_of(source))
    assert not source.exists()  # moved in, not copied: a long clip is not on the disk twice
    [item] = store.load(session.folder).items  # as after a restart
    clip = item.capture
    assert clip.is_clip and clip.encoded_path.parent == session.folder and clip.encoded_path.read_bytes() == data
    assert clip.video.frames == 10 and clip.video.codec == "h264" and clip.frame_rate == 25.0
    assert oct(clip.encoded_path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError):
        session.replace(0, Capture(SourceKind.VIDEO_FRAME, pixels=np.zeros((4, 4, 3), np.uint8)))
    old = clip.encoded_path
    session.replace_clip(0, clip_of(make_video(tmp_path, seconds=0.2, name="trimmed.mp4")))
    assert not old.exists() and store.load(session.folder).items[0].capture.video.frames == 5
    session.delete(0)
    assert sorted(p.name for p in session.folder.iterdir()) == ["session.json"]


def test_a_session_whose_clip_file_is_gone_is_reported_damaged(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    session = store.start(StudyContext(patient_name="CLIP^TEST", patient_id="C1"))
    session.add_clip(clip_of(make_video(tmp_path, seconds=0.2, name="recorded.mp4")))
    session.items[0].capture.encoded_path.unlink()
    with pytest.raises(KioskError, match="clip file"):
        store.load(session.folder)
