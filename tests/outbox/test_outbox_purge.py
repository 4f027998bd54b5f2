"""Patient data on disk: ``kiosk outbox purge`` (decommissioning) and the retention of MPPS messages."""

from __future__ import annotations

import time

from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import cli, outbox_config

from kiosk.config import to_toml
from kiosk.outbox import Outbox
from kiosk.outbox.housekeeping import delete_sent_steps
from kiosk.outbox.steps import FAILED, SENT

NAME = "Mueller_Juergen_referral"  # a user's file named after the patient: it is kept in the journal


def _raw(outbox_dir) -> bytes:
    """Every byte of the outbox's SQLite files (main, WAL), as a disk thief would read them."""
    return b"".join(p.read_bytes() for p in outbox_dir.iterdir() if p.is_file() and ".sqlite" in p.name)


def _step(outbox: Outbox, uid: str, state: str) -> None:
    for action in ("N-CREATE", "N-SET"):
        message = outbox.queue_step(uid, action, "IN PROGRESS", "Mueller^Juergen", "ris", {"kind": "dicom"},
                                    {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Mueller^Juergen"}]}})
        outbox.steps.update(message, state if action == "N-SET" else SENT)


def test_purge_deletes_what_was_delivered_and_nothing_deleted_stays_readable(tmp_path, storescp):
    from tests.support.peers import free_port

    config_file = tmp_path / "kiosk.toml"
    unreachable = {"ae_title": "GONE", "host": "127.0.0.1", "port": free_port()}
    config_file.write_text(to_toml(outbox_config(tmp_path, {"gone": unreachable}, retry_count=0)))
    kiosk = cli(config_file)
    sent = make_instances(tmp_path / "sent", 3)
    for index, path in enumerate(sorted(sent.values())):
        path.rename(path.with_name(f"{NAME}{index}.dcm"))
    kept = make_instances(tmp_path / "kept", 1)
    kiosk("send", str(tmp_path / "sent"), "--to", storescp.url, "--wait")
    assert len(received_uids(storescp.extra["received"])) == 3
    kiosk("send", str(tmp_path / "kept"), "--to", "gone")  # queued, nobody delivers it
    outbox = Outbox.from_config(outbox_config(tmp_path))
    _step(outbox, "1.2.3.1", SENT)
    _step(outbox, "1.2.3.2", FAILED)
    outbox.close()
    spool = tmp_path / "spool"
    assert NAME.encode() in _raw(spool) and b"Mueller^Juergen" in _raw(spool)

    result = kiosk("outbox", "purge")
    assert "deleted 3 delivered file(s) and 2 sent MPPS message(s)" in result.stdout
    assert "kept: 1 job(s) not delivered" in result.stdout
    outbox = Outbox.from_config(outbox_config(tmp_path))
    try:
        [job] = outbox.journal.jobs()
        assert job.sop_instance_uid in kept and outbox.spool.path(job.spool_name).exists()
        assert [m.step_uid for m in outbox.steps.messages()] == ["1.2.3.2", "1.2.3.2"]  # a failed step stays
        assert len([p for p in (spool / "files").iterdir() if p.suffix == ".dcm"]) == 1
    finally:
        outbox.close()
    assert NAME.encode() not in _raw(spool)  # overwritten and compacted, not left in free pages


def test_mpps_messages_go_retention_hours_after_their_step_was_sent(tmp_path):
    outbox = Outbox.from_config(outbox_config(tmp_path))
    try:
        _step(outbox, "1.2.3.1", SENT)
        _step(outbox, "1.2.3.2", FAILED)
        assert delete_sent_steps(outbox, 1.0) == 0  # sent just now: kept for the retention time
        assert delete_sent_steps(outbox, 1.0, now=time.time() + 3601) == 2
        assert {m.step_uid for m in outbox.steps.messages()} == {"1.2.3.2"}
    finally:
        outbox.close()
