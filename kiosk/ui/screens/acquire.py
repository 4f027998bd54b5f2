"""Acquire screen: a tile per source, presets, scans page by page, live camera preview.

While a CD or USB stick holding DICOM is inserted (``[media] mount_points``, looked
at every few seconds off the UI thread) a "Disc or USB (DICOM)" tile leads to the
Media screen, which imports its studies under this patient.

Devices are opened, scanned and read on worker threads; pages are written to
the session (disk) there too, and the screen hears about them through
``Clock.schedule_once``. The live preview runs a reader thread that keeps only
the newest frame; a 30 Hz UI timer uploads it to a texture when it changed.

Record clip hands the open live source to a ``kiosk.video.recorder.Recorder``
(``kiosk.ui.recording``): it encodes to a file in the session folder while the
preview runs on; the timer over the preview shows elapsed / limit and the free
disk space. Stills can be captured while a clip records.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.modalview import ModalView

from kiosk.errors import KioskError
from kiosk.modalities import source_order
from kiosk.session import Session
from kiosk.ui.media_watch import MediaWatch
from kiosk.ui.recording import ClipRecording, Outcome
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.services import FEEDER
from kiosk.ui.text import clock, markup, size
from kiosk.ui.strings import T
from kiosk.ui.widgets.thumbs import fit, texture_from

log = logging.getLogger(__name__)

TICK = 0.25  # s between updates of the recording timer
NEAR_LIMIT = 10.0  # s before the longest clip (or 5 % of it, if more) the timer turns amber
NEAR_RESERVE = 1e9  # bytes above [video] reserve_mb at which the timer turns amber
MB = 1 << 20  # as [video] reserve_mb counts
KEEP_CLIP_TIMEOUT = 30.0  # s the app waits, when it stops, for a clip being recorded to be kept


class ImportCard(ModalView):
    """A file chooser for images, PDFs and videos (USB stick or folder)."""

    path = StringProperty("")

    def __init__(self, on_chosen: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_chosen = on_chosen

    def choose(self) -> None:
        chosen = list(self.ids.chooser.selection)
        self.dismiss()
        self.on_chosen(chosen)


class AcquireScreen(KioskScreen):
    """Pick a source, then Scan (scanners) or Capture (cameras)."""

    PAGE_LIMITS = [1, 2, 3, 5, 10]

    status = StringProperty("")
    busy = BooleanProperty(False)
    live = BooleanProperty(False)
    selected_kind = StringProperty("")
    progress = NumericProperty(0)
    preset = StringProperty("")
    page_limit = StringProperty("")  # feeder batches: "" (all pages) or a number chosen by the user
    stopping = BooleanProperty(False)  # "Stop after this page" was tapped
    capturing = BooleanProperty(False)  # a still is being taken (also while a clip records)
    recording = BooleanProperty(False)  # a clip is being recorded (from Record until it is kept)
    saving = BooleanProperty(False)  # Stop was tapped: the recorder finishes the file
    clip_time = StringProperty("")  # the timer over the preview
    clip_warning = BooleanProperty(False)  # near the longest clip or the disk reserve: the timer is amber
    feeder = BooleanProperty(False)  # a document-feeder preset is chosen: the page limit applies

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.devices: list[Any] = []
        self.selected: Any = None
        self.device: Any = None  # the open device (live sources stay open while shown)
        self._frame: Any = None
        self._frame_seq = 0
        self._shown_seq = 0
        self._preview_stop = threading.Event()
        self._preview_event: Any = None
        self._texture: Any = None
        self.frames_shown = 0
        self._stop_after = threading.Event()
        self._recording: ClipRecording | None = None
        self._clip_event: Any = None
        self.media: list[Path] = []  # inserted media holding DICOM, each a tile
        self._media_watch: MediaWatch | None = None

    @property
    def count(self) -> int:
        """Images in the session, read from it (the screen keeps no count of its own)."""
        return self.app.image_count

    # -- life cycle ------------------------------------------------------------
    def on_enter(self) -> None:
        if self._media_watch is None:
            self._media_watch = MediaWatch(self.app, self.app.services.inserted_media, self._media_changed)
        self._media_watch.start()
        if not self.devices:
            self.discover()
        elif self.selected is None:
            self.select(self.devices[0])

    def on_leave(self) -> None:
        self.stop_recording()
        self.stop_preview()
        if self._media_watch is not None:
            self._media_watch.stop()

    def on_session(self, session: Session | None) -> None:
        self._let_recording_go()
        self.stop_preview()
        self.cancel()
        self.ids.preview.texture = None
        self._texture = None
        self.status = ""
        self.progress = 0
        if session is not None and self.devices:
            self.selected = None  # the new order's modality picks the source offered first (on entering)
            self._show_tiles(self.devices)

    def on_app_stop(self) -> None:
        recording = self._let_recording_go()
        if recording is not None and not recording.wait(KEEP_CLIP_TIMEOUT):
            log.warning("the clip being recorded was not kept within %.0f s of stopping", KEEP_CLIP_TIMEOUT)
        self.stop_preview()
        self.cancel()
        if self._media_watch is not None:
            self._media_watch.stop()

    # -- devices ---------------------------------------------------------------
    def discover(self) -> None:
        self.status = T["busy"]
        self.app.run_async(self.app.services.devices, self._discovered, self._failed, session_bound=False)

    def _discovered(self, devices: list[Any]) -> None:
        self._show_tiles(devices)
        self.status = "" if devices else T["acquire_no_devices"]
        if devices and self.selected is None:
            self.select(self.devices[0])

    def _show_tiles(self, devices: list[Any]) -> None:
        """One tile per source, the kind the session's order asks for first (``kiosk.modalities``), then
        an inserted medium's tile."""
        session = self.app.session
        devices = source_order(devices, session.context.modality if session is not None else "",
                               self.app.kiosk_config.acquisition.live_modalities)
        self.devices = devices
        tiles = self.ids.tiles
        tiles.clear_widgets()
        for info in devices:
            tile = Factory.SourceTile(text=T["source_tile"].format(
                name=markup(info.name), kind=T.get(f"kind_{info.kind}", info.kind), uri=markup(info.uri)))
            tile.uri = info.uri
            tile.bind(on_release=lambda _t, i=info: self.select(i))
            tiles.add_widget(tile)
        self._show_media_tiles()

    def _show_media_tiles(self) -> None:
        """The media tiles after the sources. Only they change when a medium comes or goes: a tile
        that moved while the operator reached for it would be the wrong one under the finger."""
        tiles = self.ids.tiles
        for tile in [t for t in tiles.children if t.uri.startswith("media:")]:
            tiles.remove_widget(tile)
        for root in self.media:
            tile = Factory.SourceTile(text=T["media_tile"].format(name=T["media_source"], label=markup(root.name)))
            tile.uri = f"media:{root}"
            tile.bind(on_release=lambda _t, r=root: self.open_medium(r))
            tiles.add_widget(tile)

    def _media_changed(self, roots: list[Path]) -> None:
        self.media = roots
        self._show_media_tiles()

    def open_medium(self, root: Path) -> None:
        """The medium's tile: read it on the Media screen (not while a scan or recording runs)."""
        if self.app.session is None or self.busy:
            return
        self.app.manager.get_screen("media").open(root)
        self.app.go("media")

    def select(self, info: Any) -> None:
        if self.live and self.selected is not None and self.selected.uri == info.uri:
            return  # its tile tapped again: the preview runs on
        self.stop_recording()
        self.stop_preview()
        self.selected = info
        self.selected_kind = info.kind
        for tile in self.ids.tiles.children:
            tile.active = tile.uri == info.uri
        presets = self.app.services.presets() if info.kind == "scanner" else []
        self.ids.presets.values = presets
        if presets and self.preset not in presets:
            self.preset = presets[0]
        if info.kind == "camera":
            self.start_preview()

    def _failed(self, error: KioskError) -> None:
        self.busy = self.recording  # a clip being recorded ends by its own outcome
        self.stopping = False
        self.progress = 0
        self.status = error.message + (f" {error.hint}" if error.hint else "")

    # -- scanning --------------------------------------------------------------
    def scan(self) -> None:
        station = self.app.station
        if self.selected is None or station is None or self.busy:
            return
        self.busy = True
        self.status = T["scanning"].format(page=1)
        self.progress = 0
        uri, preset = self.selected.uri, self.preset
        limit = int(self.page_limit) if self.feeder and self.page_limit.isdigit() else 0
        self._stop_after = stop_after = threading.Event()
        self.stopping = False
        state = {"pages": 0, "scanned": 0}
        cleaner = self.app.services.cleaner(preset)  # the preset's clean-up, before the page enters the session

        def work() -> int:
            with self.app.services.open(uri) as device:
                self.device = device
                try:
                    self.app.services.configure(device, preset)
                    for capture in device.batch(lambda p: Clock.schedule_once(lambda _dt: self._progress(p))):
                        state["scanned"] += 1
                        page = cleaner(capture)
                        if page is not None:
                            station.add(page)
                            state["pages"] += 1
                            preview = self._preview_of(page)
                            Clock.schedule_once(lambda _dt, p=preview: self._page_added(p))
                        if stop_after.is_set() or state["scanned"] == limit:
                            break  # ends the batch: the driver stops the feeder
                finally:
                    self.device = None
            return state["pages"]

        def failed(error: KioskError) -> None:
            self._failed(error)
            if state["pages"]:
                self.status = f"{T['scanned'].format(count=state['pages'])} {self.status}"

        self.app.run_async(work, lambda pages: self._scanned(pages, dropped=cleaner.dropped), failed)

    def on_preset(self, *_args: Any) -> None:
        self.feeder = self.selected_kind == "scanner" and self.preset.endswith(FEEDER)

    on_selected_kind = on_preset

    def stop_after_page(self) -> None:
        """Let the page being scanned finish, then end the batch (the rest stays in the feeder)."""
        if self.busy:
            self._stop_after.set()
            self.stopping = True

    def start(self) -> None:
        """The big button: Scan, Capture or Import, by the kind of source."""
        kind = self.selected_kind
        if kind == "camera":
            self.capture()
        elif kind == "files":
            self.choose_files()
        else:
            self.scan()

    # -- files ---------------------------------------------------------------------
    def choose_files(self) -> None:
        ImportCard(path=self.app.services.import_start(), on_chosen=self.import_files).open()

    def import_files(self, paths: list[str]) -> None:
        """Add every page of the chosen image/PDF files, and each video file as a clip, in the order chosen."""
        station = self.app.station
        if station is None or not paths or self.busy:
            return
        self.busy = True
        state = {"pages": 0}
        work_dir = station.session.folder if station.session is not None else None

        def progressed(progress: Any) -> None:  # a video being transcoded
            Clock.schedule_once(lambda _dt: setattr(self, "progress", progress.fraction))

        def work() -> int:
            for path in paths:
                with self.app.services.open(f"file:{path}", work_dir) as device:
                    for capture in device.batch(progressed):
                        if capture.is_clip:
                            station.add_clip(capture)  # the session takes the clip's file
                        else:
                            station.add(capture)
                        state["pages"] += 1
                        preview = self._preview_of(capture)
                        Clock.schedule_once(lambda _dt, p=preview: self._page_added(p))
            return state["pages"]

        self.app.run_async(work, lambda pages: self._scanned(pages, "imported"), self._failed)

    def _progress(self, progress: Any) -> None:
        if self.app is None:
            return
        self.progress = progress.fraction
        self.status = T["scanning"].format(page=progress.page + 1)

    @staticmethod
    def _preview_of(capture: Any) -> Any:
        """The page as shown on screen, computed on the worker thread (a 300 dpi page takes a while)."""
        from kiosk.processing import thumbnail

        try:
            return thumbnail(capture, 1024)
        except KioskError:  # a PDF: nothing to show
            return None

    def _page_added(self, preview: Any) -> None:
        if self.app is None or self.app.session is None:
            return
        if preview is not None:
            self.ids.preview.texture = texture_from(preview)

    def _scanned(self, pages: int, said: str = "scanned", dropped: int = 0) -> None:
        self.busy = False
        self.stopping = False
        self.progress = 0
        self.status = T[said].format(count=pages) + (" " + T["blank_left_out"].format(count=dropped) if dropped else "")

    def cancel(self) -> None:
        device = self.device
        if device is not None:
            device.cancel()

    # -- live sources ------------------------------------------------------------
    def start_preview(self) -> None:
        uri = self.selected.uri
        self._preview_stop = stop = threading.Event()
        self.status = T["busy"]

        def reader() -> None:
            try:
                device = self.app.services.open(uri)
            except KioskError as error:
                Clock.schedule_once(lambda _dt, e=error: self._failed(e))
                return
            self.device = device
            try:
                for frame in device.frames():
                    if stop.is_set():
                        break
                    self._frame, self._frame_seq = fit(frame.pixels, self._preview_size), frame.seq
            except KioskError as error:
                if not stop.is_set():
                    Clock.schedule_once(lambda _dt, e=error: self._preview_lost(e))
            finally:
                if self.device is device:  # a newer reader may already have opened the source again
                    self.device = None
                device.close()

        self._preview_size = self.ids.preview.size
        threading.Thread(target=reader, daemon=True, name="kiosk-preview").start()
        # Checked every frame (a cheap comparison), uploaded only when the reader has a new one:
        # polling at the source's own rate would alias and drop up to half the frames.
        self._preview_event = self.app.schedule(self._show_frame, 0)
        self.live = True

    def _show_frame(self, _dt: float) -> None:
        if self._frame_seq == self._shown_seq or self._frame is None:
            return
        self._preview_size = self.ids.preview.size  # the reader scales the next frames to it
        self._shown_seq = self._frame_seq
        self._texture = texture_from(self._frame, self._texture)
        self.ids.preview.texture = self._texture
        self.ids.preview.canvas.ask_update()
        self.frames_shown += 1
        if self.status == T["busy"]:
            self.status = ""

    def _preview_lost(self, error: KioskError) -> None:
        self.live = False
        self._failed(error)

    def stop_preview(self) -> None:
        self._preview_stop.set()
        if self._preview_event is not None:
            self._preview_event.cancel()
            self._preview_event = None
        self.live = False
        self._frame, self._frame_seq, self._shown_seq = None, 0, 0

    def capture(self) -> None:
        """Keep the next live frame (button, space/enter key or a foot pedal), also while a clip records."""
        station, device = self.app.station, self.device
        if station is None or device is None or not self.live or self.capturing or (self.busy and not self.recording):
            return
        self.busy = self.capturing = True

        def work() -> Any:
            capture = device.acquire()
            station.add(capture)
            return capture

        def done(_capture: Any) -> None:
            self.capturing = False
            self.busy = self.recording
            self.status = T["captured"]

        def failed(error: KioskError) -> None:
            self.capturing = False
            self._failed(error)
            self.busy = self.recording

        self.app.run_async(work, done, failed)

    # -- clips -------------------------------------------------------------------
    def toggle_recording(self) -> None:
        """Record button: start a clip, or stop it (the recorder also stops by itself at [acquisition]
        max_clip_seconds, near the disk's [video] reserve_mb, or when the source is lost)."""
        if self._recording is not None:
            self.stop_recording()
            return
        station, device = self.app.station, self.device
        if station is None or station.session is None or device is None or not self.live or self.busy:
            return
        folder = station.session.folder  # the clip's disk: it joins the session by a rename
        self.busy = self.recording = True
        self.saving, self.clip_warning, self.clip_time = False, False, T["clip_starting"]
        self.status = ""
        app = self.app
        self._recording = ClipRecording(lambda: app.services.recorder(device, folder), station,
                                        done=lambda outcome: Clock.schedule_once(lambda _dt: self._recorded(app, outcome)),
                                        release=app.hold(station))
        self._recording.begin()
        self._clip_event = self.app.schedule(self._tick, TICK)

    def _tick(self, _dt: float) -> None:
        """The timer: elapsed / limit and the free space of the session's disk, amber near either end."""
        recording = self._recording
        if recording is None or not recording.started.is_set():
            return
        recorder = recording.recorder
        elapsed, limit, free = recorder.elapsed, recorder.limit, recorder.free_bytes
        reserve = self.app.kiosk_config.video.reserve_mb * MB
        self.clip_warning = limit - elapsed <= max(NEAR_LIMIT, limit * 0.05) or free - reserve <= NEAR_RESERVE
        self.clip_time = T["clip_timer"].format(elapsed=clock(elapsed), limit=clock(limit), free=size(free))

    def stop_recording(self) -> None:
        """Stop the clip being recorded and keep it in the session it was recorded for (Stop, leaving
        the screen, another source); the outcome arrives in ``_recorded``."""
        recording = self._recording
        if recording is None or self.saving:
            return
        recording.finish()
        if self._clip_event is not None:  # the timer says "saving" until the outcome
            self._clip_event.cancel()
            self._clip_event = None
        self.saving = True
        self.clip_time = T["clip_saving"]

    def _let_recording_go(self) -> ClipRecording | None:
        """The session changed or the app stops: the clip is still kept in its own session (the app
        holds it open until then), but this screen no longer shows it."""
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.finish()
        self._recording_ended()
        return recording

    def _recording_ended(self) -> None:
        if self._clip_event is not None:
            self._clip_event.cancel()
            self._clip_event = None
        if self.recording:
            self.recording = False
            self.busy = self.capturing
        self.saving = self.clip_warning = False
        self.clip_time = ""

    def _recorded(self, app: Any, outcome: Outcome) -> None:
        """On the UI thread: the recording ``app`` started ended and its clip was kept, or not (``Outcome``)."""
        if app._stopped:  # the clip is in its session already; nobody to tell
            return
        if self._recording is not None and self._recording.station is outcome.station:
            self._recording = None
            self._recording_ended()
        current = outcome.station is app.station
        if outcome.error is not None:
            if not outcome.started:  # refused (disk below the reserve, no live picture): nothing was recorded
                if current:
                    self._failed(outcome.error)
            else:
                app.show_error(T["clip_not_kept"].format(why=outcome.error.message))
        elif not current:
            app.show_message(T["clip_kept_elsewhere"])
        else:
            clip = outcome.clip.video
            said = T["clip_added"].format(duration=clock(clip.duration), frames=clip.frames)
            said = T["clip_added_because"].format(added=said, why=outcome.message) if outcome.reason else said
            self.status = T["clip_left_out"].format(added=said, lost=outcome.lost) if outcome.lost else said

    def on_key(self, key: int) -> bool:
        if self.manager.current == self.name and self.live and key in (32, 13, 271):
            self.capture()
            return True
        return False


SCREEN = AcquireScreen
