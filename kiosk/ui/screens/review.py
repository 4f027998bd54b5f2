"""Review screen: thumbnails in order; select, enlarge, rotate, crop, invert, clean up, undo, delete, reorder;
play and trim a clip.

Edits run ``kiosk.processing`` or ``kiosk.cleanup`` on a worker thread and
replace the capture in the session (on disk) before the screen shows the
result; the page an edit replaced is kept in memory for Undo.

A clip (``Capture.is_clip``) plays in the large view (``kiosk.ui.playback``:
decoded off the UI thread at the clip's own pace, late frames dropped) with a
position slider. Trimming cuts its file at keyframes without re-encoding
(``kiosk.video.streams.trim``, on a worker): Set start snaps to the keyframe
at or before the position, Set end to the first one after it (the cut ends
just before it), so the frame on screen is always kept; the trimmed file
replaces the clip in the session.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.widget import Widget

from kiosk import cleanup, processing
from kiosk.barcodes import Verdict
from kiosk.capture import Capture
from kiosk.modalities import series_description
from kiosk.session import Session
from kiosk.ui.playback import ClipPlayer
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.strings import T
from kiosk.ui.text import clock, size
from kiosk.ui.widgets.seek import SeekSlider  # noqa: F401 - the .kv rule uses it
from kiosk.ui.widgets.thumbs import Thumb, clip_badge, fit, texture_from


class CropArea(Widget):
    """Drag across the large image to mark the part to keep (fractions of the shown image)."""

    box = None  # (left, top, right, bottom) fractions, top-left origin
    active = BooleanProperty(False)
    rect = (0.0, 0.0, 0.0, 0.0)
    image_rect = (0.0, 0.0, 1.0, 1.0)  # where the picture is drawn inside the Image widget

    def on_touch_down(self, touch: Any) -> bool:
        if self.active and self.collide_point(*touch.pos):
            touch.grab(self)
            self._start = touch.pos
            self._update(touch.pos)
            return True
        return super().on_touch_down(touch)

    def on_touch_move(self, touch: Any) -> bool:
        if touch.grab_current is self:
            self._update(touch.pos)
            return True
        return super().on_touch_move(touch)

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is self:
            touch.ungrab(self)
            self._update(touch.pos)
            return True
        return super().on_touch_up(touch)

    def _update(self, pos: tuple[float, float]) -> None:
        ix, iy, iw, ih = self.image_rect
        x0, x1 = sorted((self._start[0], pos[0]))
        y0, y1 = sorted((self._start[1], pos[1]))
        x0, x1 = max(x0, ix), min(x1, ix + iw)
        y0, y1 = max(y0, iy), min(y1, iy + ih)
        self.rect = (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))
        self.box = ((x0 - ix) / iw, 1 - (y1 - iy) / ih, (x1 - ix) / iw, 1 - (y0 - iy) / ih)
        self.property("active").dispatch(self)


UNDO_DEPTH = 8  # page edits Undo can take back (each keeps one page's pixels in memory)


class ReviewScreen(KioskScreen):
    """Check, fix and order the session's images, then Send."""

    selected = NumericProperty(0)
    busy = BooleanProperty(False)
    cropping = BooleanProperty(False)
    status = StringProperty("")
    series = StringProperty("")
    multiframe = BooleanProperty(False)
    selected_clip = BooleanProperty(False)  # clips are sent whole: no rotate/crop/invert, but play and trim
    playing = BooleanProperty(False)
    clip_duration = NumericProperty(0.0)  # s, the selected clip's
    position = NumericProperty(0.0)  # s, the frame shown
    position_text = StringProperty("")
    trim_start = NumericProperty(0.0)  # s: what a trim keeps, snapped to keyframes
    trim_end = NumericProperty(0.0)
    trim_text = StringProperty("")
    trimmable = BooleanProperty(False)  # the marks cut something off
    clip_info = StringProperty("")  # the selected clip's frames, file size and stream, over the picture
    flag = StringProperty("")  # the selected page's barcode verdict: another patient, a separator sheet
    can_undo = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        self._undo: list[tuple[str, Capture]] = []  # (the edited page's item id, the page before), newest last
        self._player: ClipPlayer | None = None
        self._player_item = ""  # the item id of the clip the player plays
        self._keyframes: list[float] = []  # the player's clip's keyframe times (s)
        self._shown_seq = 0
        self._play_event: Any = None
        self._texture: Any = None
        super().__init__(**kwargs)

    @property
    def count(self) -> int:
        """Images in the session, read from it (the screen keeps no count of its own)."""
        return self.app.image_count

    def on_enter(self) -> None:
        self.app.bind(session_revision=self._session_saved)
        session = self.app.session
        self.ids.series.values = [p.strip() for p in self.app.ui.series_presets.split(";") if p.strip()]
        if session is not None:
            self.series = session.series_description or self._default_series(session)
            self.multiframe = session.multiframe
        self.reload()

    def on_leave(self) -> None:
        self.app.unbind(session_revision=self._session_saved)
        self._close_player()

    def on_app_stop(self) -> None:
        if self._player is not None:  # the decoder stops; the screen stays as it is
            self._player.pause()

    def _default_series(self, session: Session) -> str:
        """Described by where the first image came from (camera frames are no scanned documents)."""
        if not session.items:
            return (self.ids.series.values or [""])[0]
        return series_description(session.items[0].capture.kind, self.app.kiosk_config.acquisition.series_descriptions)

    def _session_saved(self, *_args: Any) -> None:
        """A capture added or changed elsewhere (another thread, the station) while this screen is
        shown: show the session as it is now. This screen's own edits reload when they are done."""
        if not self.busy:
            self.reload()

    def on_session(self, session: Session | None) -> None:
        self._close_player()
        self._undo.clear()
        self.can_undo = False
        self.ids.thumbs.clear_widgets()
        self.ids.large.texture = None
        self.selected, self.cropping, self.status, self.flag, self.clip_info = 0, False, "", "", ""

    # -- display -----------------------------------------------------------------
    def reload(self) -> None:
        """Rebuild thumbnails (computed off the UI thread) and the large view."""
        session = self.app.session
        if session is None:
            return
        captures = session.captures
        self.selected = min(self.selected, max(0, len(captures) - 1))
        self.flag = ""
        if not captures:
            self._close_player()
            self.clip_info = ""
            self.ids.thumbs.clear_widgets()
            self.ids.large.texture = None
            self.status = T["review_empty"]
            return
        selected = self.selected
        capture = captures[selected]
        self.flag = flag_text(Verdict.of(capture))
        self.selected_clip = capture.is_clip
        self.status = T["item_of"].format(index=selected + 1, count=len(captures))
        self.clip_info = clip_text(capture) if capture.is_clip else ""
        if capture.is_clip:
            self._open_player(session.items[selected].id, capture)
        else:
            self._close_player()

        def work() -> tuple[list[Any], Any]:
            return [self._thumb(c, 160) for c in captures], self._thumb(captures[selected], 1400)

        self.app.run_async(work, self._show)

    @staticmethod
    def _thumb(capture: Any, size: int) -> Any:
        try:
            return processing.thumbnail(capture, size)
        except Exception:  # noqa: BLE001 - a PDF has no pixels: shown as an empty tile
            return None

    def _show(self, result: tuple[list[Any], Any]) -> None:
        thumbs, large = result
        session = self.app.session
        box = self.ids.thumbs
        box.clear_widgets()
        for index, pixels in enumerate(thumbs):
            capture = session.captures[index] if index < len(session) else None
            thumb = Thumb(index=index, selected=index == self.selected, badge=badge_of(session, index),
                          clip=clip_badge(capture) if capture is not None else "")
            if pixels is not None:
                thumb.texture = texture_from(pixels)
            thumb.bind(on_release=lambda t: self.select(t.index))
            box.add_widget(thumb)
        if self._player is None or self._player.latest is None:  # a clip's frame shown stays
            self.ids.large.texture = texture_from(large) if large is not None else None

    def select(self, index: int) -> None:
        self.cropping = False
        self.selected = index
        self.reload()

    # -- clips: playback and trimming ---------------------------------------------------
    def _open_player(self, item_id: str, capture: Capture) -> None:
        """A player for the selected clip (the one there stays if it plays this clip already)."""
        if self._player is not None and self._player_item == item_id:
            return
        self._close_player()
        facts = capture.video
        large = self.ids.large
        self._player = ClipPlayer(capture.encoded_path, facts.frame_rate, facts.duration,
                                  fit=lambda pixels: fit(pixels, tuple(large.size)))
        self._player_item = item_id
        self.clip_duration = facts.duration
        self.position, self.trim_start, self.trim_end = 0.0, 0.0, facts.duration
        self._keyframes = []
        self._follow_marks()
        self._play_event = self.app.schedule(self._play_tick, 0)

        def keyframes() -> list[float]:
            from kiosk.video.streams import keyframe_times

            return keyframe_times(facts)

        def known(times: list[float]) -> None:
            if self._player_item == item_id:
                self._keyframes = sorted(times)

        self.app.run_async(keyframes, known)

    def _close_player(self) -> None:
        player, self._player, self._player_item = self._player, None, ""
        if self._play_event is not None:
            self._play_event.cancel()
            self._play_event = None
        if player is not None:
            player.pause()  # its worker ends at its next frame; the file may go (a trim, a delete)
        self.playing = False
        self.position_text = self.trim_text = ""
        self.trimmable = False
        self.clip_duration = self.position = self.trim_start = self.trim_end = 0.0
        self._shown_seq = 0
        self._texture = None

    def _play_tick(self, _dt: float) -> None:
        """Every frame: show the player's newest picture, follow its position, notice its end or error."""
        player = self._player
        if player is None:
            return
        self.playing = player.playing
        picture = player.latest
        if picture is not None and picture.seq != self._shown_seq:
            self._shown_seq = picture.seq
            self._texture = texture_from(picture.pixels, self._texture)
            self.ids.large.texture = self._texture
            self.ids.large.canvas.ask_update()
        if not self.ids.position.dragging:
            self.position = min(player.position, self.clip_duration)
        self.position_text = T["clip_position"].format(position=clock(self.position, tenths=True),
                                                       duration=clock(self.clip_duration, tenths=True))
        if player.error is not None:
            error, player.error = player.error, None
            self.status = error.message

    def toggle_play(self) -> None:
        player = self._player
        if player is None or self.busy:
            return
        if player.playing:
            player.pause()
        else:
            player.play(self.position)
        self.playing = player.playing

    def seek(self, at: float) -> None:
        """The slider let go at ``at`` s: play on from there, or show that frame."""
        player = self._player
        if player is None:
            return
        self.position = at
        if player.playing:
            player.play(at)
        else:
            player.show(at)

    def set_start(self) -> None:
        """Trim from the keyframe at or before the position (decoding can start only at a keyframe)."""
        before = [k for k in self._keyframes if k <= self.position + 1e-3]
        self.trim_start = before[-1] if before else 0.0
        if self.trim_end <= self.trim_start:
            self.trim_end = self.clip_duration
        self._follow_marks()

    def set_end(self) -> None:
        """Trim up to the first keyframe after the position (or the clip's end): the cut ends just before
        it, so the frame shown stays."""
        after = [k for k in self._keyframes if k > self.position + 1e-3 and k > self.trim_start]
        self.trim_end = after[0] if after else self.clip_duration
        self._follow_marks()

    def _follow_marks(self) -> None:
        duration = self.clip_duration
        self.trimmable = bool(duration) and (self.trim_start > 0 or self.trim_end < duration) \
            and self.trim_end > self.trim_start
        self.trim_text = T["trim_keep"].format(
            start=clock(self.trim_start, tenths=True), end=clock(self.trim_end, tenths=True),
            length=clock(self.trim_end - self.trim_start, tenths=True)) if self.trimmable else ""

    def trim(self) -> None:
        """Cut the selected clip to the marks (a remux at keyframes, no re-encode) in the session folder."""
        session = self.app.session
        if session is None or not self.trimmable or self.busy or not self.selected_clip:
            return
        start, end = self.trim_start, self.trim_end
        self._close_player()
        self.status = T["trimming"]

        def change(s: Session, index: int) -> str:
            from kiosk.video import streams

            before = s.captures[index]
            target = s.folder / f"trim-{uuid.uuid4().hex[:8]}.mp4"
            try:
                streams.trim(before.encoded_path, target, start, end)
                clip = streams.clip_capture(target, before.kind, source=before.source, metadata=dict(before.metadata))
                s.replace_clip(index, clip)
            except BaseException:
                target.unlink(missing_ok=True)  # replace_clip moved it in only if it succeeded
                raise
            return T["trimmed"].format(duration=clock(clip.video.duration, tenths=True), frames=clip.video.frames)

        self._edit(change)

    # -- edits -------------------------------------------------------------------
    def _edit(self, change: Callable[[Session, int], None], select: int | None = None) -> None:
        session = self.app.session
        if session is None or self.busy or not len(session):
            return
        self.busy = True
        index = self.selected

        def work() -> Any:
            return change(session, index)

        def done(result: Any) -> None:
            self.busy = False
            if select is not None:
                self.selected = max(0, min(select, len(session) - 1))
            self.can_undo = bool(self._undo)
            self.reload()
            if isinstance(result, str):  # what the edit has to say (nothing to change, undone)
                self.status = result

        def failed(error: Any) -> None:
            self.busy = False
            self.reload()  # as it is (a failed trim closed the clip's player)
            self.app.show_error(error)

        self.app.run_async(work, done, failed)

    def rotate(self) -> None:
        self._edit_page(processing.rotate)

    def invert(self) -> None:
        self._edit_page(processing.invert)

    # -- page clean-up and undo ------------------------------------------------
    def straighten(self) -> None:
        self._edit_page(lambda c: cleanup.clean(c, cleanup.CleanUp(deskew=True)))

    def crop_to_page(self) -> None:
        self._edit_page(lambda c: cleanup.clean(c, cleanup.CleanUp(auto_crop=True)))

    def remove_borders(self) -> None:
        self._edit_page(lambda c: cleanup.clean(c, cleanup.CleanUp(clean_borders=True)))

    def auto_rotate(self) -> None:
        self._edit_page(lambda c: cleanup.clean(c, cleanup.CleanUp(auto_rotate=True)))

    def _edit_page(self, change: Callable[[Capture], Capture]) -> None:
        """Replace the selected page by ``change(page)``, keeping the page it replaces for Undo."""
        undo = self._undo

        def edit(session: Session, index: int) -> str | None:
            before = session.captures[index]
            after = change(before)
            if after is before:
                return T["nothing_to_change"]
            self._replace(session, index, after)
            undo.append((session.items[index].id, before))
            del undo[:-UNDO_DEPTH]
            return None

        self._edit(edit)

    def undo(self) -> None:
        """Take back the newest page edit still in the session (its page is selected)."""
        undo = self._undo
        session = self.app.session
        if session is None or self.busy:
            return
        ids = [item.id for item in session.items]
        while undo and undo[-1][0] not in ids:
            undo.pop()  # that page was deleted since
        if not undo:
            self.can_undo = False
            return
        index = ids.index(undo[-1][0])
        self.selected = index

        def take_back(s: Session, i: int) -> str:
            _id, before = undo.pop()
            self._replace(s, i, before)
            return T["undone"].format(index=i + 1)

        self._edit(take_back)

    def _replace(self, session: Session, index: int, capture: Capture) -> None:
        """``session.replace``, with the page's older Undo entries following it to its new item id."""
        old = session.items[index].id
        session.replace(index, capture)
        new = session.items[index].id
        self._undo[:] = [(new if item == old else item, page) for item, page in self._undo]

    def delete(self) -> None:
        self._edit(lambda s, i: s.delete(i), select=self.selected)

    def move(self, step: int) -> None:
        target = self.selected + step
        if 0 <= target < self.count:
            self._edit(lambda s, i: s.move(i, target), select=target)

    def toggle_crop(self) -> None:
        area = self.ids.crop
        if not self.cropping:
            self.cropping = True
            area.box, area.rect = None, (0, 0, 0, 0)
            area.image_rect = self._image_rect()
            self.status = T["crop_hint"]
            return
        self.cropping = False
        box = area.box
        if box:
            self._edit_page(lambda c: processing.crop(c, *box))

    def _image_rect(self) -> tuple[float, float, float, float]:
        large = self.ids.large
        width, height = large.norm_image_size
        return (large.center_x - width / 2, large.center_y - height / 2, width, height)

    # -- options ---------------------------------------------------------------
    def on_series(self, *_args: Any) -> None:
        if self.app and self.app.session is not None and self.series != self.app.session.series_description:
            self.app.session.set_options(series_description=self.series)

    def on_multiframe(self, *_args: Any) -> None:
        if self.app and self.app.session is not None and self.multiframe != self.app.session.multiframe:
            self.app.session.set_options(multiframe=self.multiframe)


def flag_text(verdict: Verdict) -> str:
    """What the Review screen says under a flagged page (the barcode's value: the operator's own paperwork)."""
    if verdict.mismatch is not None:
        key = "barcode_order" if verdict.mismatch.field == "accession" else "barcode_patient"
        return T[key].format(value=verdict.mismatch.value)
    return T["separator_sheet"] if verdict.separator else ""


def clip_text(capture: Capture) -> str:
    """What the Review screen says of a clip: frames, file size and the stream ("H.264 High 4.1,
    1280x720, 30 fps, 12.0 s")."""
    facts = capture.video
    try:
        length = capture.encoded_path.stat().st_size
    except OSError:
        length = 0
    return T["clip_item"].format(frames=facts.frames, size=size(length), description=facts.describe())


def badge_of(session: Session | None, index: int) -> str:
    """The red label on a thumbnail: a barcode of another patient, or a separator sheet."""
    if session is None or index >= len(session.items):
        return ""
    verdict = Verdict.of(session.items[index].capture)
    return T["barcode_badge"] if verdict.mismatch else T["separator_badge"] if verdict.separator else ""


SCREEN = ReviewScreen
