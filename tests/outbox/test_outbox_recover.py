"""A lost, emptied or damaged journal: nothing is deleted or forgotten, `kiosk outbox recover` rebuilds the jobs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import cli, deliver, outbox_config, queue
from tests.support.paths import ROOT

from kiosk.config import to_toml
from kiosk.outbox import Outbox, OutboxFullError
from kiosk.outbox.spool import MB, Spool


@pytest.fixture
def kiosk(tmp_path):
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(outbox_config(tmp_path)))

    return cli(config_file)


def spool_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool" / "files").glob("*.dcm"))


def age(paths: list[Path], seconds: float = 3600) -> None:
    """Make files look accepted ``seconds`` ago (recovery leaves younger unknown files alone)."""
    old = time.time() - seconds
    for path in paths:
        os.utime(path, (old, old))


@pytest.mark.parametrize("loss", ["truncate", "delete"])
def test_lost_journal_stops_delivery_keeps_every_file_and_recover_rebuilds_the_jobs(tmp_path, kiosk, storescp, loss):
    made = make_instances(tmp_path / "in", 12)
    kiosk("send", str(tmp_path / "in"), "--to", storescp.url)  # no delivery running: all stay queued
    journal = tmp_path / "spool" / "journal.sqlite"
    if loss == "truncate":
        journal.write_bytes(b"")
    else:
        journal.unlink()
    age(spool_files(tmp_path))

    listing = kiosk("outbox", "list", check=3)
    assert "the outbox is empty" not in listing.stdout
    assert "missing or empty" in listing.stderr and "12 image(s)" in listing.stderr
    assert "kiosk outbox recover" in listing.stderr and "move it away" not in listing.stderr
    refused = kiosk("outbox", "run", "--exit-when-idle", "--poll", "0.1", check=3)
    assert "kiosk outbox recover" in refused.stderr
    more = make_instances(tmp_path / "more", 1)
    assert "kiosk outbox recover" in kiosk("send", str(tmp_path / "more"), "--to", storescp.url, check=3).stderr
    assert len(spool_files(tmp_path)) == 12
    assert list(storescp.extra["received"].iterdir()) == []

    recovered = kiosk("outbox", "recover").stdout
    assert f"queued 12 job(s) again for {storescp.url}" in recovered
    jobs = json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"]
    assert sorted(job["sop_instance_uid"] for job in jobs) == sorted(made)
    assert {job["state"] for job in jobs} == {"queued"}
    assert sorted(job["original"] for job in jobs) == sorted(str(path) for path in made.values())
    kiosk("send", str(tmp_path / "more"), "--to", storescp.url)
    kiosk("outbox", "run", "--exit-when-idle", "--poll", "0.1")
    assert sorted(received_uids(storescp.extra["received"])) == sorted([*made, *more])
    assert "0 spool file(s) queued again, 13 already in the journal" in kiosk("outbox", "recover").stdout


@pytest.mark.parametrize("damage", ["page", "header"])
def test_damaged_journal_is_a_clear_error_and_recover_keeps_it_aside(tmp_path, kiosk, damage):
    made = make_instances(tmp_path / "in", 30)
    kiosk("send", str(tmp_path / "in"), "--to", "PACS@127.0.0.1:9", "--commit")
    journal = tmp_path / "spool" / "journal.sqlite"
    data = bytearray(journal.read_bytes())
    page = 4096
    assert len(data) > 3 * page, "the journal is expected to have several pages"
    if damage == "header":
        data[:100] = os.urandom(100)
    else:  # every page but the first (the schema): the tables' pages
        data[page:] = os.urandom(len(data) - page)
    journal.write_bytes(bytes(data))

    for args in (("outbox", "list"), ("outbox", "show", "1"), ("outbox", "run", "--exit-when-idle")):
        result = kiosk(*args, check=3)
        assert "journal" in result.stderr and "damaged" in result.stderr, result.stderr
        assert "kiosk outbox recover" in result.stderr and "move it away" not in result.stderr

    recovered = kiosk("outbox", "recover").stdout
    assert "the damaged journal was moved to" in recovered
    kept = next(journal.parent.glob("journal.sqlite.damaged-*"))
    assert kept.read_bytes() == bytes(data)
    assert "queued 30 job(s) again for PACS@127.0.0.1:9" in recovered
    jobs = json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"]
    assert sorted(job["sop_instance_uid"] for job in jobs) == sorted(made)
    assert {(job["state"], job["commitment"]) for job in jobs} == {("queued", True)}


def test_recover_on_a_sound_journal_adopts_only_files_it_does_not_know(tmp_path):
    from kiosk.outbox.recovery import recover_journal

    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    to = "folder:" + str(tmp_path / "usb")
    first = queue(outbox, config, list(make_instances(tmp_path / "a", 2).values()), to)
    queue(outbox, config, list(make_instances(tmp_path / "b", 3).values()), to)
    # What an older kiosk left after recreating a lost journal: files it no longer knows.
    forgotten = [outbox.spool.path(job.spool_name) for job in outbox.journal.jobs_by_id(first)]
    outbox.journal.remove(first)
    no_record = tmp_path / "spool" / "files" / "norecord.dcm"
    shutil.copy(forgotten[0], no_record)
    outbox.close()
    age([forgotten[0], no_record])  # forgotten[1] is recent: perhaps another process is accepting it

    result = recover_journal(outbox.settings)
    assert (result.fresh, result.moved_to, result.known, result.files, result.recent) == (False, None, 3, 1, 1)
    assert result.unusable == [("norecord.dcm", "it has no record of where it was to be sent")]
    outbox = Outbox.from_config(config)
    try:
        adopted = outbox.journal.jobs()[-1]
        assert (len(outbox.journal.jobs()), adopted.spool_name, adopted.state) == (4, forgotten[0].name, "queued")
        assert no_record.exists() and forgotten[1].exists()
    finally:
        outbox.close()


def test_reasons_name_the_users_file_not_the_spool_file(tmp_path):
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 1)
    (tmp_path / "usb").mkdir()
    jobs = queue(outbox, config, list(made.values()), "folder:" + str(tmp_path / "usb"))
    job = outbox.journal.get(jobs[0])
    outbox.spool.path(job.spool_name).unlink()
    deliver(outbox, config, jobs)
    failed = outbox.journal.get(jobs[0])
    outbox.close()
    assert failed.state == "failed"
    assert f"the outbox's copy of {next(iter(made.values()))} is missing" in failed.reason
    assert job.spool_name not in failed.reason


def test_free_space_message_prints_megabytes_plainly(tmp_path):
    spool = Spool(tmp_path / "spool", 500 * MB)
    with pytest.raises(OutboxFullError) as caught:
        spool.check_free(spool.free_bytes())
    assert "500 MB must stay free" in caught.value.message


# In a private mount namespace: a 2 MB tmpfs as spool that "another program" fills before the kiosk starts.
FULL_DISK = r"""
import json, subprocess, sys, time
from pathlib import Path
root = Path(sys.argv[1])
spool = root / "spool"
spool.mkdir(parents=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(spool)], check=True)
from tests.support.outbox_data import fill_disk, make_instances, received_uids
from tests.support.outbox_helpers import outbox_config, queue
from kiosk.config import to_toml
from kiosk.outbox import Outbox

usb = root / "usb"
config = outbox_config(root)
(root / "kiosk.toml").write_text(to_toml(config))
outbox = Outbox.from_config(config)
queue(outbox, config, list(make_instances(root / "in", 3, size=50_000).values()), f"folder:{usb}")
outbox.close()
filler = spool / "filler"
fill_disk(filler)

def kiosk(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(root / "kiosk.toml"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)

results = {}
for name, args in {"list": ("outbox", "list"), "send": ("send", str(root / "in"), "--to", f"folder:{usb}")}.items():
    out, err = kiosk(*args).communicate(timeout=60)
    results[name] = out, err
service = kiosk("outbox", "run", "--exit-when-idle", "--poll", "0.1")
time.sleep(3)
waiting = service.poll() is None
usb.mkdir()
filler.unlink()
out, err = service.communicate(timeout=60)
results["run"] = out, err
results["run_waited"] = waiting
results["run_code"] = service.returncode
results["delivered"] = len(received_uids(usb))
print(json.dumps(results))
"""


def test_a_disk_filled_before_start_says_disk_full_lists_and_delivery_waits(tmp_path):
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", FULL_DISK, str(tmp_path)]
    # From the repository root, the child (python -c) imports tests.support by package.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT)
    if result.returncode != 0 and ("unshare failed" in result.stderr or "mount" in result.stderr.lower()
                                   and "permission denied" in result.stderr.lower()):
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    listed, errors = outcome["list"]
    assert "3 queued" in listed, errors
    _, refused = outcome["send"]
    assert "disk is full" in refused and "MB free" in refused and "move it away" not in refused
    assert "Traceback" not in refused + outcome["run"][1]
    assert outcome["run_waited"], outcome["run"]
    assert "disk is full" in outcome["run"][1]
    assert (outcome["run_code"], outcome["delivered"]) == (0, 3), outcome["run"]
