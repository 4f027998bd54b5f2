"""``kill -9`` of the delivery process at random moments: every instance arrives, under its own UID."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import outbox_config, queue

from kiosk.config import to_toml
from kiosk.outbox import Outbox

TRIALS = 20
KIOSK = [sys.executable, "-m", "kiosk"]


def test_kill_9_at_random_moments_loses_nothing_and_never_renames(tmp_path, storescp_factory):
    storescp = storescp_factory(options=["+uf"])  # keep every copy received, duplicates included
    rng = random.Random(int(os.environ.get("OUTBOX_CRASH_SEED", "5")))
    config = outbox_config(tmp_path, batch_size=5, retry_interval=0.1, retry_max_interval=0.5, retry_count=100)
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(config))
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 600)
    jobs = queue(outbox, config, list(made.values()), storescp.url)
    received = storescp.extra["received"]
    progress, mid_send, stale = [], 0, set()

    def sending() -> set[int]:
        return {job.id for job in outbox.journal.jobs(state="sending")}

    def sent() -> int:
        return Counter(j.state for j in outbox.journal.jobs_by_id(jobs))["sent"]

    def wait_until(condition) -> None:  # noqa: ANN001
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not condition():
            time.sleep(0.002)

    # Kills are placed by what the process has done, not by the clock alone: a
    # fast machine sends hundreds of small instances a second.
    argv = [*KIOSK, "--config", str(config_file), "outbox", "run", "--poll", "0.1"]
    for trial in range(TRIALS):
        before = sent()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 3 == 0:
            # Anywhere: during start-up, recovery or sending.
            time.sleep(rng.uniform(0.05, 0.8))
        elif trial % 3 == 1:
            # In an association: just after a new batch is claimed.
            wait_until(lambda: sending() not in (set(), stale))
            time.sleep(rng.uniform(0.0, 0.01))
        else:
            # After a random number of instances delivered in this run.
            target = before + rng.randint(1, 25)
            wait_until(lambda: sent() >= target)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        progress.append(sent())
        left = sending()
        mid_send += bool(left) and left != stale
        stale = left
    # Enough kills must land in the middle of an association for the test to mean anything.
    assert mid_send >= 3, f"only {mid_send} kill(s) hit an association; sent after each kill: {progress}"
    final = subprocess.run([*argv, "--exit-when-idle"], capture_output=True, text=True, timeout=60)
    assert final.returncode == 0, final.stderr
    states = Counter(j.state for j in outbox.journal.jobs_by_id(jobs))
    assert states == {"sent": len(made)}, states
    arrived = Counter(received_uids(received))
    assert set(arrived) == set(made), "missing or unexpected SOP Instance UIDs"
    print(f"sent after each kill: {progress}; {mid_send} kills mid-association; "
          f"{sum(arrived.values()) - len(made)} duplicate(s) received")
    outbox.close()
