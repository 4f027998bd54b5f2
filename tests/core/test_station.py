"""kiosk.station: one lifecycle for the touch UI and the CLI, one object at a time, events in order."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pydicom
import pytest
from tests.support.outbox_data import make_instances
from tests.support.outbox_helpers import outbox_config
from tests.support.paths import ROOT
from tests.support.peers import free_port
from tests.support.video import clip_of, make_video

from kiosk import IMPLEMENTATION_CLASS_UID
from kiosk.capture import Capture, SourceKind
from kiosk.config import load_config
from kiosk.dicomize import BuildOptions
from kiosk.outbox import Outbox
from kiosk.outbox.core import lock_delivery
from kiosk.outbox.destinations import parse_destination
from kiosk.outbox.worker import wait_for
from kiosk.session import ABANDONED, SessionStore
from kiosk.station import BackgroundDelivery, FolderOutput, OutboxOutput, Station, StationClosed, observe
from kiosk.study import StudyContext

PATIENT = {"patient_name": "Doe^Jane", "patient_id": "P-6", "birth_date": "19800101", "sex": "F",
           "accession": "A-17", "study_description": "Consent"}
# What may differ between two runs of the same captures: identities and the moment of creation.
VARYING_VRS = {"UI", "DA", "TM", "DT"}


def comparable(ds: pydicom.Dataset) -> dict:
    """The data set (file meta included) as nested values, without UIDs, dates and times (nor the
    file meta's group length, which follows the lengths of the UIDs, nor the Performed Procedure
    Step ID, which, like a UID, is new for each batch)."""
    out = {}
    for elem in [*ds.file_meta, *ds]:
        if elem.VR in VARYING_VRS or elem.tag in (0x00020000, 0x00400253):
            continue
        if elem.VR == "SQ":
            out[elem.tag] = [comparable_items(item) for item in elem.value]
        else:
            out[elem.tag] = elem.value
    return out


def comparable_items(item: pydicom.Dataset) -> dict:
    return {e.tag: ([comparable_items(i) for i in e.value] if e.VR == "SQ" else e.value)
            for e in item if e.VR not in VARYING_VRS}


def page(value: int, shape=(40, 30)) -> Capture:
    return Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.full(shape, value, np.uint8), dpi=300.0,
                   source="demo:scanner")


def test_the_touch_ui_session_and_kiosk_acquire_make_the_same_datasets(tmp_path):
    config_path = tmp_path / "kiosk.toml"
    config_path.write_text(f"""
[local]
ae_title = "KIOSK"
station_name = "FRONTDESK"
[outbox]
spool_dir = "{tmp_path / 'spool'}"
min_free_mb = 0
[destinations.pacs]
ae_title = "PACS"
host = "127.0.0.1"
port = {free_port()}
[presets.Quick]
mode = "color"
dpi = 60
""")
    config = load_config(config_path)
    from kiosk.ui.services import Services

    # The touch UI's route: the app's Station.start, the acquire screen's open/configure/add, the Send
    # screen's services.send. The delivery lock is held here, so the objects stay in the spool to be read.
    (tmp_path / "spool").mkdir()
    held = lock_delivery(tmp_path / "spool")
    services = Services(config)
    try:
        station = Station.start(SessionStore(tmp_path / "sessions"), StudyContext.manual(**PATIENT))
        cleaner = services.cleaner("Quick (feeder)")  # the preset's page clean-up, as the acquire screen does
        with services.open("demo:scanner") as device:
            services.configure(device, "Quick (feeder)")
            for capture in device.batch():
                station.add(cleaner(capture))
        job = services.send(station, ["pacs"])
        outbox = services.outbox()
        spooled = [outbox.spool.path(j.spool_name) for j in outbox.journal.jobs_by_id(job.jobs["pacs"])]
    finally:
        services.close()
        os.close(held)
    assert job.total == 3 and not station.session.folder.exists()

    out = tmp_path / "acquired"
    options = [f"--{key.replace('_', '-')}={value}" for key, value in PATIENT.items()]
    result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config_path), "acquire",
                             "--source", "demo:scanner", "--preset", "Quick", "--adf", "-o", str(out), *options],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr

    def datasets(paths: list[Path]) -> list[pydicom.Dataset]:
        return sorted((pydicom.dcmread(p) for p in paths), key=lambda ds: int(ds.InstanceNumber))

    from_ui, from_cli = datasets(spooled), datasets(sorted(out.glob("*.dcm")))
    assert len(from_ui) == len(from_cli) == 3
    for ui_ds, cli_ds in zip(from_ui, from_cli):
        assert comparable(ui_ds) == comparable(cli_ds)
        assert ui_ds.PatientName == "Doe^Jane" and ui_ds.StationName == "FRONTDESK"
        assert ui_ds.file_meta.ImplementationClassUID == cli_ds.file_meta.ImplementationClassUID \
            == IMPLEMENTATION_CLASS_UID


def send_peak(tmp_path: Path, pages: int) -> int:
    """Peak bytes traced while the touch UI's route builds and queues a session of ``pages`` pages."""
    config = outbox_config(tmp_path / str(pages))
    outbox = Outbox.from_config(config)
    name, spec = parse_destination(config, f"folder:{tmp_path / 'usb'}")
    rng = np.random.default_rng(pages)
    station = Station.start(SessionStore(tmp_path / f"sessions{pages}"), StudyContext.manual(**PATIENT),
                            BuildOptions(transfer_syntax="explicit"))
    for _ in range(pages):
        station.add(Capture(SourceKind.SCANNED_DOCUMENT, pixels=rng.integers(0, 255, (1000, 1000), np.uint8)))
    try:
        tracemalloc.start()
        station.send([OutboxOutput(outbox, {name: spec})])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        outbox.close()


def test_sending_a_session_takes_no_more_memory_for_more_pages(tmp_path):
    # Each page is a 1 MB object: holding all of a session's objects would add 6 MB for 8 pages over 2.
    two, eight = send_peak(tmp_path, 2), send_peak(tmp_path, 8)
    assert eight < two + 1_500_000, f"peak {two / 1e6:.1f} MB for 2 pages, {eight / 1e6:.1f} MB for 8"


def test_a_streaming_station_holds_one_object_at_a_time(tmp_path):
    built: list[weakref.ref] = []
    alive_at_build: list[int] = []

    def on_built(event) -> None:
        if event.name != "object_built":
            return
        alive_at_build.append(sum(1 for ref in built if ref() is not None))
        built.append(weakref.ref(event.dataset))

    output = FolderOutput(tmp_path)
    station = Station.stream(StudyContext.manual(**PATIENT), BuildOptions(), [output], [on_built])
    for index in range(6):
        station.add(page(index))
    station.finish()
    assert len(output.files) == 6 and alive_at_build == [0] * 6


def names(events) -> list[str]:
    return [e.name for e in events]


def test_lifecycle_events_of_a_streamed_acquisition_in_order(tmp_path):
    events, everywhere = [], []
    stop = observe(everywhere.append)
    try:
        station = Station.stream(StudyContext.manual(**PATIENT), BuildOptions(), [FolderOutput(tmp_path)],
                                 [events.append])
        station.add(page(1))
        station.add_clip(clip_of(make_video(tmp_path, seconds=0.4, name="clip.mp4")))
        station.finish()
    finally:
        stop()
    assert names(events) == ["context_chosen", "capture_added", "object_built", "queued",
                             "capture_added", "object_built", "queued", "delivering", "finished"]
    assert events[4].frames == 10 and events[-1].objects == 2 and station.state == "finished"
    assert events[3].path.is_file() and events[3].sop_instance_uid == str(pydicom.dcmread(events[3].path).SOPInstanceUID)
    assert everywhere == events  # what MPPS, audit ... attach to
    with pytest.raises(StationClosed):
        station.add(page(4))


def test_lifecycle_of_a_persisted_session_through_delivery_to_finished(tmp_path):
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    usb = tmp_path / "usb"
    usb.mkdir()
    name, spec = parse_destination(config, f"folder:{usb}")
    events = []
    station = Station.start(SessionStore(tmp_path / "sessions"), StudyContext.manual(**PATIENT), BuildOptions(),
                            [events.append])
    station.add(page(1))
    station.add(page(2))
    assert names(events) == ["context_chosen", "capture_added", "capture_added"]
    delivery = BackgroundDelivery.claim(outbox, config, poll=0.1)
    delivery.start()
    try:
        station.send([OutboxOutput(outbox, {name: spec})])
        assert station.state == "delivering" and not station.session.folder.exists()
        done = wait_for(outbox, station.jobs[name])
        for _ in range(300):
            if done() and sum(1 for e in events if e.name == "delivery_status" and getattr(e.event, "new", "") == "sent") == 2:
                break
            delivery.thread.join(0.05)
        station.finish()
    finally:
        delivery.stop()
        outbox.close()
    order = names(events)
    assert [n for n in order if n != "delivery_status"] == ["context_chosen", "capture_added", "capture_added",
                                                           "object_built", "queued", "object_built", "queued",
                                                           "delivering", "finished"]
    first_queued, end = order.index("queued"), order.index("finished")
    statuses = [e.event for e in events if e.name == "delivery_status"]
    assert all(first_queued < i < end for i, n in enumerate(order) if n == "delivery_status")
    assert {(s.job_id, s.new) for s in statuses if getattr(s, "new", "") == "sent"} == {(i, "sent") for i in station.jobs[name]}


def test_an_abandoned_session_is_kept_and_resumes_with_its_context(tmp_path):
    events = []
    store = SessionStore(tmp_path)
    station = Station.start(store, StudyContext.manual(**PATIENT), BuildOptions(), [events.append])
    station.add(page(1))
    station.abandon()
    assert names(events) == ["context_chosen", "capture_added", "abandoned"] and events[-1].captures == 1
    kept = store.load(station.session.folder)
    assert kept.state == ABANDONED and len(kept) == 1
    again = Station.resume(kept, BuildOptions(), [events.append])
    assert events[-1].name == "context_chosen" and events[-1].study.patient_id == "P-6"
    assert again.captures == 1 and store.load(kept.folder).state == "open"


def test_kiosk_send_queues_files_through_a_station(tmp_path):
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    name, spec = parse_destination(config, f"folder:{tmp_path / 'usb'}")
    events = []
    station = Station()
    station.subscribe(events.append, "queued", "finished")
    try:
        jobs = station.queue_files(list(make_instances(tmp_path / "in", 3).values()), OutboxOutput(outbox, {name: spec}))
    finally:
        outbox.close()
    station.finish()
    assert names(events) == ["queued", "finished"] and len(events[0].jobs[name]) == 3 == len(jobs[name])
    with pytest.raises(ValueError, match="no station event"):
        station.subscribe(events.append, "built")


def test_starting_a_persisted_station_does_not_load_the_dicomizer(tmp_path):
    """The touch UI starts and resumes stations on its own thread: importing pydicom there stalls
    drawing for a third of a second and can race a worker thread's first import of it (pydicom's
    circular imports then fail). The dicomizer is loaded by ``send``, in the sending thread."""
    script = (
        "import sys\n"
        "from kiosk.session import SessionStore\n"
        "from kiosk.station import Station\n"
        "from kiosk.study import StudyContext\n"
        f"store = SessionStore({str(tmp_path)!r})\n"
        "import numpy as np\n"
        "from kiosk.capture import Capture, SourceKind\n"
        "station = Station.start(store, StudyContext.manual(patient_name='Doe^Jane', patient_id='P1'))\n"
        "station.add(Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.zeros((8, 8), np.uint8), dpi=300.0))\n"
        "station.abandon()\n"
        "Station.resume(store.load(station.session.folder))\n"
        "print(sorted(m for m in ('pydicom', 'kiosk.dicomize') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
