"""Storage commitment through the outbox with Orthanc: committed, and a refused commitment shown as failed."""

from __future__ import annotations

from tests.support.outbox_data import make_instances
from tests.support.outbox_helpers import deliver, outbox_config

from kiosk.config import parse_config, values_of
from kiosk.outbox import Outbox
from kiosk.outbox.journal import Update
from kiosk.outbox.worker import AWAITING


def orthanc_config(tmp_path, orthanc):
    base = outbox_config(tmp_path)
    return parse_config({
        "local": {"ae_title": "KIOSK", "port": orthanc.extra["kiosk_port"]},
        "destinations": {"pacs": {"ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.port,
                                  "storage_commitment": True}},
        "outbox": values_of(base.outbox),
    })


def test_jobs_end_committed(tmp_path, orthanc):
    config = orthanc_config(tmp_path, orthanc)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 3, patient_id="COMMIT1")
    from kiosk.outbox.destinations import parse_destination

    name, spec = parse_destination(config, "pacs")
    jobs = outbox.accept_files(list(made.values()), {name: spec}, {name})["pacs"]
    seen = []
    outbox.events.subscribe(lambda e: seen.append(getattr(e, "new", None)))
    deliver(outbox, config, jobs, timeout=60)
    assert [j.state for j in outbox.journal.jobs_by_id(jobs)] == ["committed"] * 3
    assert "sent" in seen  # sent first, then committed
    stored = {orthanc.tags(i)["SOPInstanceUID"] for i in orthanc.instances()}
    assert set(made) <= stored
    outbox.close()


def test_refused_commitment_shows_as_failed(tmp_path, orthanc):
    config = orthanc_config(tmp_path, orthanc)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 1, patient_id="COMMIT2")
    from kiosk.outbox.destinations import parse_destination

    name, spec = parse_destination(config, "pacs")
    jobs = outbox.accept_files(list(made.values()), {name: spec}, {name})["pacs"]
    # As if sent and then lost by the PACS: Orthanc does not have it, so it refuses to commit.
    outbox.apply([Update(jobs[0], "sent", reason=AWAITING)])
    deliver(outbox, config, jobs, timeout=60)
    job = outbox.journal.get(jobs[0])
    assert job.state == "failed"
    assert "storage commitment refused" in job.reason and job.status is not None
    outbox.retry([job.id])  # a person sends it again: now it is stored and committed
    deliver(outbox, config, jobs, timeout=60)
    assert outbox.journal.get(jobs[0]).state == "committed"
    outbox.close()
