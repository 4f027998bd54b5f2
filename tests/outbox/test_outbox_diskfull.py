"""Disk full: a 2 MB tmpfs as spool. New images are refused with the message; nothing accepted is lost."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

# Runs in a private mount namespace so the tmpfs is seen by nobody else and vanishes with it.
SCRIPT = r"""
import json, subprocess, sys, time
from pathlib import Path
spool, data, usb, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
spool.mkdir(parents=True, exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(spool)], check=True)
from tests.support.outbox_data import fill_disk, make_instances
from tests.support.outbox_helpers import deliver, outbox_config, queue
from kiosk.checksum import FileChanged, open_checked
from kiosk.outbox import Outbox, OutboxFullError

def damage(outbox, job):
    try:
        open_checked(outbox.spool.path(job.spool_name), job.entry.sha256).close()
    except FileChanged as exc:
        return str(exc)
    return None

config = outbox_config(spool.parent, min_free_mb=1 if mode == "threshold" else 0)
outbox = Outbox.from_config(config)
files = list(make_instances(data, 40, size=100_000).values())
accepted, refusals, filler = [], [], spool / "filler"
for index, path in enumerate(files):
    if mode == "filled" and index == 5:
        fill_disk(filler)
    try:
        accepted += queue(outbox, config, [path], f"folder:{usb}")
    except OutboxFullError as exc:
        refusals.append(str(exc))
        if len(refusals) == 2:
            break
problems = [damage(outbox, j) for j in outbox.journal.jobs_by_id(accepted)]
usb.mkdir()
if mode == "filled":
    # Delivery on a disk with no byte free must not lose or damage anything either.
    deliver(outbox, config, lambda: time.sleep(1.0) or True, timeout=30)
    problems += [damage(outbox, j) for j in outbox.journal.jobs_by_id(accepted)]
    filler.unlink()
deliver(outbox, config, accepted)
states = [j.state for j in outbox.journal.jobs_by_id(accepted)]
print(json.dumps({"accepted": len(accepted), "refusals": refusals,
                  "problems": [p for p in problems if p], "states": states}))
"""


@pytest.mark.parametrize("mode", ["threshold", "filled"])
def test_disk_full_refuses_new_images_and_keeps_accepted_ones(tmp_path, mode):
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SCRIPT,
            str(tmp_path / "spool"), str(tmp_path / "data"), str(tmp_path / "usb"), mode]
    # From the repository root, the child (python -c) imports tests.support by package.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if result.returncode != 0 and ("unshare failed" in result.stderr or "mount" in result.stderr.lower()
                                   and "permission denied" in result.stderr.lower()):
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert 5 <= outcome["accepted"] < 40
    assert len(outcome["refusals"]) == 2
    for message in outcome["refusals"]:
        assert "outbox disk is full" in message and "nothing already accepted is lost" in message
    assert outcome["problems"] == []
    assert outcome["states"] == ["sent"] * outcome["accepted"]
