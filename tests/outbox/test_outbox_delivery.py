"""Delivery to real DICOM peers with real faults: outage, A700, A900/C000, abort mid-batch."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import ScriptedSCP, deliver, outbox_config, queue
from tests.support.peers import free_port, start_storescp

from kiosk.net import fastpath
from kiosk.outbox import Outbox
from kiosk.outbox.events import DestinationStatus


@pytest.fixture
def scripted():
    started = []

    def factory(**kwargs) -> ScriptedSCP:
        scp = ScriptedSCP(**kwargs)
        started.append(scp)
        return scp

    yield factory
    for scp in started:
        scp.stop()


def test_pacs_down_when_sending_starts_is_delivered_when_it_comes_up(tmp_path, storescp_factory):
    from tests.support.netns import need_isolation as _need_isolation

    _need_isolation()
    config = outbox_config(tmp_path, retry_count=30)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 5)
    port = free_port()
    events: list = []
    outbox.events.subscribe(events.append)
    jobs = queue(outbox, config, list(made.values()), f"STORESCP@127.0.0.1:{port}")
    peer = {}
    timer = threading.Timer(1.5, lambda: peer.setdefault("p", start_storescp(tmp_path / "late", port=port)))
    timer.start()
    try:
        deliver(outbox, config, jobs, timeout=30)
    finally:
        timer.join()
        peer["p"].stop()
    states = outbox.journal.jobs_by_id(jobs)
    assert [j.state for j in states] == ["sent"] * 5
    assert sorted(received_uids(peer["p"].extra["received"])) == sorted(made)
    reach = [e.reachable for e in events if isinstance(e, DestinationStatus)]
    assert reach[0] is False and reach[-1] is True
    outbox.close()


def test_a700_is_retried_automatically(tmp_path, scripted):
    scp = scripted(statuses=[0xA700])
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 3)
    jobs = queue(outbox, config, list(made.values()), scp.url)
    seen = []
    outbox.events.subscribe(lambda e: seen.append(getattr(e, "new", None)))
    deliver(outbox, config, jobs)
    assert [j.state for j in outbox.journal.jobs_by_id(jobs)] == ["sent"] * 3
    assert "retrying" in seen
    assert sorted(scp.received) == sorted(made)
    outbox.close()


@pytest.mark.parametrize("code", [0xA900, 0xC000])
def test_permanent_failure_waits_for_a_person_then_manual_retry_delivers(tmp_path, scripted, code):
    scp = scripted(statuses=[code])
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 3)
    jobs = queue(outbox, config, list(made.values()), scp.url)
    deliver(outbox, config, jobs)
    first, *rest = outbox.journal.jobs_by_id(jobs)
    assert first.state == "failed" and first.status == code
    assert f"{code:04X}" in first.reason and "kiosk outbox retry" in first.reason
    assert [j.state for j in rest] == ["sent", "sent"]
    time.sleep(0.5)  # no automatic retry of a permanent failure
    deliver(outbox, config, lambda: True)
    assert outbox.journal.get(first.id).state == "failed"
    assert outbox.retry_failed() == 1
    deliver(outbox, config, jobs)
    assert [j.state for j in outbox.journal.jobs_by_id(jobs)] == ["sent"] * 3
    assert sorted(scp.received) == sorted(made)
    outbox.close()


def test_association_aborted_mid_batch_delivers_the_rest_next_time(tmp_path, scripted):
    scp = scripted(abort_at=3)
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 6)
    jobs = queue(outbox, config, list(made.values()), scp.url)
    deliver(outbox, config, jobs)
    final = outbox.journal.jobs_by_id(jobs)
    assert [j.state for j in final] == ["sent"] * 6
    # The two stored before the abort were not sent again; the rest came in a later association.
    assert [j.attempts for j in final[:2]] == [0, 0]
    counts = Counter(scp.received)
    assert set(counts) == set(made) and max(counts.values()) == 1
    assert scp.requests == 7
    outbox.close()


def test_batches_that_follow_each_other_share_one_association_released_at_the_end(tmp_path, scripted):
    scp = scripted()
    config = outbox_config(tmp_path, batch_size=4)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 10)
    jobs = queue(outbox, config, list(made.values()), scp.url)
    deliver(outbox, config, jobs)
    assert [j.state for j in outbox.journal.jobs_by_id(jobs)] == ["sent"] * 10
    assert sorted(scp.received) == sorted(made)
    deadline = time.monotonic() + 5
    while scp.releases < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Three batches of at most 4, one association, released (not left open) once the work ran out.
    assert (scp.associations, scp.releases) == (1, 1)
    outbox.close()


def test_two_destinations_in_parallel_one_association_each(tmp_path, storescp_factory, scripted):
    slow = scripted(statuses=[0xA700] * 1)
    fast = storescp_factory()
    config = outbox_config(tmp_path, batch_size=4)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 10)
    from kiosk.outbox.destinations import parse_destination

    dests = dict(parse_destination(config, url) for url in (slow.url, fast.url))
    jobs = outbox.accept_files(list(made.values()), dests)
    deliver(outbox, config, [i for ids in jobs.values() for i in ids])
    assert sorted(received_uids(fast.extra["received"])) == sorted(made)
    assert sorted(slow.received) == sorted(made)
    summary = outbox.summary()
    assert all(counts["sent"] == 10 for counts in summary.values())
    outbox.close()


def test_unconfirmed_storage_commitment_is_asked_again_then_fails_visibly(tmp_path, scripted):
    scp = scripted()
    config = outbox_config(tmp_path, commitment_timeout=0.3, retry_count=2, retry_interval=0.1)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 2)
    jobs = queue(outbox, config, list(made.values()), scp.url, commit=True)
    reasons = []
    outbox.events.subscribe(lambda e: reasons.append(getattr(e, "reason", "")))
    deliver(outbox, config, jobs)
    final = outbox.journal.jobs_by_id(jobs)
    assert [j.state for j in final] == ["failed", "failed"]
    assert all("not confirmed" in j.reason and "gave up after 3 requests" in j.reason for j in final)
    assert sorted(scp.received) == sorted(made)  # stored all right, just never confirmed
    outbox.close()


def test_a_damaged_spool_file_fails_its_job_and_the_batch_goes_on(tmp_path, storescp):
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 4)
    jobs = queue(outbox, config, list(made.values()), storescp.url)
    victim = outbox.journal.get(jobs[1])
    path = outbox.spool.path(victim.spool_name)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only the checksum on the bytes being sent can tell
    path.write_bytes(bytes(data))
    deliver(outbox, config, jobs)
    states = [job.state for job in outbox.journal.jobs_by_id(jobs)]
    assert states == ["sent", "failed", "sent", "sent"]
    reason = outbox.journal.get(jobs[1]).reason
    assert reason.startswith(f"the outbox's copy of {victim.original} changed after it was accepted")
    assert "capture or import it again" in reason
    assert sorted(received_uids(storescp.extra["received"])) == sorted(set(made) - {victim.sop_instance_uid})
    outbox.close()


def test_an_instance_the_pacs_aborts_on_goes_alone_and_the_rest_of_its_batch_is_delivered(tmp_path, scripted):
    made = make_instances(tmp_path / "in", 6)
    poison = next(iter(made))  # first in the batch, so first again at every re-claim
    scp = scripted(abort_on={poison})
    config = outbox_config(tmp_path, retry_count=3)
    outbox = Outbox.from_config(config)
    jobs = queue(outbox, config, list(made.values()), scp.url)
    deliver(outbox, config, jobs)
    first, *rest = outbox.journal.jobs_by_id(jobs)
    assert [j.state for j in rest] == ["sent"] * 5
    assert [j.attempts for j in rest] == [0] * 5  # the abort was not counted against them
    assert first.state == "failed" and "aborted" in first.reason and "gave up after 4 attempts" in first.reason
    assert sorted(scp.received) == sorted(set(made) - {poison})
    assert scp.requests == 4 + 5  # after the first abort it went alone, once per attempt
    outbox.close()


def test_a_spooled_file_storescp_aborts_on_fails_alone(tmp_path, storescp):
    """A file cut short that got into the spool unchecked (an older kiosk): DCMTK aborts on it, the rest go on."""
    from kiosk.outbox.core import spool_record
    from kiosk.outbox.destinations import parse_destination
    from kiosk.outbox.journal import Accepted
    from kiosk.part10 import read_meta

    config = outbox_config(tmp_path, retry_count=1)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 4)
    paths = list(made.values())
    paths[0].write_bytes(paths[0].read_bytes()[:-500])
    metas = [read_meta(p) for p in paths]
    name, spec = parse_destination(config, storescp.url)
    accepted = [Accepted(entry, m.sop_instance_uid, m.sop_class_uid, m.transfer_syntax)
                for entry, m in zip(outbox.spool.put_files(paths, spool_record({name: spec}, set())), metas)]
    jobs = outbox.journal.add(accepted, {name: spec})[name]
    deliver(outbox, config, jobs)
    first, *rest = outbox.journal.jobs_by_id(jobs)
    assert [(j.state, j.attempts) for j in rest] == [("sent", 0)] * 3
    # Off the fast path the file is checked before pynetdicom would re-encode it into a shorter data set.
    why = "aborted the association" if fastpath.enabled() else "cut short"
    assert first.state == "failed" and why in first.reason, first.reason
    assert sorted(received_uids(storescp.extra["received"])) == sorted(m.sop_instance_uid for m in metas[1:])
    outbox.close()


def test_the_documented_retry_figures_are_what_delivery_does(tmp_path, scripted):
    """A job fails after retry_count + 1 attempts; the docs give that and the default backoff's total."""
    from kiosk.config import OutboxConfig, schema
    from kiosk.outbox.core import OutboxSettings

    from tests.support.paths import ROOT as root

    scp = scripted(statuses=[0xA700] * 10)
    config = outbox_config(tmp_path, retry_count=2, retry_interval=0.1)
    outbox = Outbox.from_config(config)
    jobs = queue(outbox, config, list(make_instances(tmp_path / "in", 1).values()), scp.url)
    deliver(outbox, config, jobs)
    [job] = outbox.journal.jobs_by_id(jobs)
    assert (job.state, job.attempts, scp.requests) == ("failed", 3, 3) and "gave up after 3 attempts" in job.reason
    outbox.close()

    defaults = OutboxSettings(spool_dir=tmp_path)
    hours = sum(defaults.backoff(n) for n in range(1, defaults.retry_count + 1)) / 3600
    assert "retry_count + 1" in schema(OutboxConfig)["retry_count"].doc
    for doc in ("docs/outbox.md", "docs/configuration.md", "packaging/kiosk.example.toml"):
        text = " ".join((root / doc).read_text().split())
        assert f"{hours:.2f} h" in text and "retry_count + 1" in text, doc


def test_a_bug_while_sending_fails_only_its_instance_after_the_retries(tmp_path, storescp, monkeypatch):
    """An unexpected exception from sending (a bug, injected here for one instance) counts as an attempt
    and isolates each instance of the batch: the others are delivered, the one that trips it ends failed
    instead of being re-queued for ever."""
    from kiosk.outbox.destinations import DicomDestination

    config = outbox_config(tmp_path, retry_count=1, retry_interval=0.1)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 3)
    bad_uid = next(iter(made))
    real_send = DicomDestination.send

    def send(self, items, progress, cancel):  # noqa: ANN001
        if any(item.sop_instance_uid == bad_uid for item in items):
            raise RuntimeError("injected bug")
        return real_send(self, items, progress, cancel)

    monkeypatch.setattr(DicomDestination, "send", send)
    jobs = queue(outbox, config, list(made.values()), storescp.url)
    deliver(outbox, config, jobs)
    by_uid = {j.sop_instance_uid: j for j in outbox.journal.jobs_by_id(jobs)}
    bad = by_uid.pop(bad_uid)
    assert (bad.state, bad.attempts) == ("failed", 2) and "internal error while sending (RuntimeError)" in bad.reason
    assert all(job.state == "sent" for job in by_uid.values())
    assert sorted(received_uids(storescp.extra["received"])) == sorted(by_uid)
    outbox.close()
