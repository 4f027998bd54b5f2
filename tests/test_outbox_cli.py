"""``kiosk send`` and ``kiosk outbox ...`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from outbox_data import make_instances, received_uids
from outbox_helpers import ScriptedSCP, outbox_config

from kiosk.config import to_toml
from kiosk.outbox import Outbox


@pytest.fixture
def kiosk(tmp_path):
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(outbox_config(tmp_path)))

    def run(*args: str, timeout: float = 60, check: int | None = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config_file), *args],
                                capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        if check is not None:
            assert result.returncode == check, result.stdout + result.stderr
        return result

    return run


def test_send_wait_delivers_and_list_show_report_it(tmp_path, kiosk, storescp):
    made = make_instances(tmp_path / "in", 4)
    result = kiosk("send", str(tmp_path / "in"), "--to", storescp.url, "--wait")
    assert "queued 4 instance(s)" in result.stdout and "4 of 4 job(s) delivered" in result.stdout
    assert sorted(received_uids(storescp.extra["received"])) == sorted(made)
    listing = json.loads(kiosk("outbox", "list", "--json").stdout)
    assert {job["state"] for job in listing["jobs"]} == {"sent"}
    assert listing["summary"][storescp.url]["sent"] == 4
    uid = listing["jobs"][0]["sop_instance_uid"]
    shown = kiosk("outbox", "show", str(listing["jobs"][0]["id"])).stdout
    assert uid in shown and "sent" in shown
    assert "4 sent" in kiosk("outbox", "list").stdout


def test_many_files_are_accepted_by_a_helper_process_while_this_one_delivers(tmp_path, kiosk, storescp):
    from kiosk.cli.send import HELPER_MIN

    made = make_instances(tmp_path / "in", HELPER_MIN + 20)
    result = kiosk("send", str(tmp_path / "in"), "--to", storescp.url, "--wait", timeout=120)
    assert f"queued {len(made)} instance(s)" in result.stdout
    assert f"{len(made)} of {len(made)} job(s) delivered" in result.stdout
    assert sorted(received_uids(storescp.extra["received"])) == sorted(made)


def test_a_stray_file_among_many_queues_nothing_and_says_which(tmp_path, kiosk, storescp):
    from kiosk.cli.send import HELPER_MIN

    make_instances(tmp_path / "in", HELPER_MIN + 5)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    result = kiosk("send", str(tmp_path / "in"), "--to", storescp.url, "--wait", check=1)
    assert "notes.txt" in result.stderr and "Part 10" in result.stderr
    assert json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"] == []
    assert list(storescp.extra["received"].iterdir()) == []


def test_failed_job_is_visible_then_retried_and_removed(tmp_path, kiosk):
    scp = ScriptedSCP(statuses=[0xA900])
    try:
        make_instances(tmp_path / "in", 2)
        result = kiosk("send", str(tmp_path / "in"), "--to", scp.url, "--wait", check=1)
        assert "FAILED job 1" in result.stdout and "A900" in result.stdout
        failed = kiosk("outbox", "list", "--state", "failed").stdout
        assert "A900" in failed and "failed" in failed
        assert "1 job(s) queued again" in kiosk("outbox", "retry", "--all-failed").stdout
        kiosk("outbox", "run", "--exit-when-idle", "--poll", "0.1")
        jobs = json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"]
        assert [job["state"] for job in jobs] == ["sent", "sent"]
        assert len(scp.received) == 2
        assert "1 job(s) removed" in kiosk("outbox", "remove", "1").stdout
        missing = kiosk("outbox", "show", "1", check=2)
        assert "no job 1" in missing.stderr
    finally:
        scp.stop()


def test_unsent_jobs_are_removed_only_with_force(tmp_path, kiosk):
    make_instances(tmp_path / "in", 1)
    result = kiosk("send", str(tmp_path / "in"), "--to", "PACS@127.0.0.1:9")
    assert "no delivery service is running" in result.stderr
    refused = kiosk("outbox", "remove", "1", check=2)
    assert "never delivered" in refused.stderr and "--force" in refused.stderr
    kiosk("outbox", "remove", "1", "--force")
    assert "the outbox is empty" in kiosk("outbox", "list").stdout


def test_non_dicom_input_is_refused_and_nothing_is_queued(tmp_path, kiosk):
    make_instances(tmp_path / "in", 2)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    result = kiosk("send", str(tmp_path / "in"), "--to", "PACS@127.0.0.1:9", check=1)
    assert "notes.txt: not a DICOM Part 10 file" in result.stderr
    assert "the outbox is empty" in kiosk("outbox", "list").stdout


def test_only_one_delivery_process_per_spool_and_send_wait_watches_it(tmp_path, kiosk, storescp):
    config_file = tmp_path / "kiosk.toml"
    first = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(config_file), "outbox", "run"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outbox = Outbox.from_config(outbox_config(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while not outbox.delivery_running():
            assert first.poll() is None and time.monotonic() < deadline, "the delivery service did not start"
            time.sleep(0.05)
        second = kiosk("outbox", "run", "--exit-when-idle", check=1)
        assert "already delivering" in second.stderr
        made = make_instances(tmp_path / "in", 3)
        result = kiosk("send", str(tmp_path / "in"), "--to", storescp.url, "--wait")  # the service delivers
        assert "3 of 3 job(s) delivered" in result.stdout
        assert "no delivery service" not in result.stderr
        assert sorted(received_uids(storescp.extra["received"])) == sorted(made)
    finally:
        outbox.close()
        first.terminate()  # SIGTERM: a clean stop
        assert first.wait(timeout=20) == 0


def test_config_shows_the_outbox_section(kiosk):
    shown = kiosk("config", "show").stdout
    assert "[outbox]" in shown and "retry_count = 5" in shown


def hung_scp():
    """A Storage SCP that accepts the association and never answers a C-STORE (until ``release`` is set)."""
    import threading

    from pydicom.uid import SecondaryCaptureImageStorage
    from pynetdicom import evt

    from net_data import ScriptedSCP as PlainSCP

    arrived, release = threading.Event(), threading.Event()

    def hang(event):  # noqa: ANN001 - pynetdicom Event
        arrived.set()
        release.wait(60)
        return 0x0000

    scp = PlainSCP(aet="HUNG", contexts=[SecondaryCaptureImageStorage], handlers=[(evt.EVT_C_STORE, hang)])
    return scp, arrived, release


@pytest.mark.parametrize("how", ["outbox run + SIGTERM", "send --wait + Ctrl-C", "store + Ctrl-C"])
def test_stopping_does_not_wait_for_a_c_store_never_answered(tmp_path, kiosk, how):
    import signal

    scp, arrived, release = hung_scp()
    made = make_instances(tmp_path / "in", 2)
    config_file = tmp_path / "kiosk.toml"
    outbox = Outbox.from_config(outbox_config(tmp_path))
    command = {"outbox run + SIGTERM": ["outbox", "run"],
               "send --wait + Ctrl-C": ["send", str(tmp_path / "in"), "--to", scp.url, "--wait"],
               "store + Ctrl-C": ["store", str(tmp_path / "in"), "--to", scp.url]}[how]
    if how.startswith("outbox run"):
        from outbox_helpers import queue

        jobs = queue(outbox, outbox_config(tmp_path), list(made.values()), scp.url)
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(config_file), *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert arrived.wait(30), "the C-STORE never arrived"
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM if "SIGTERM" in how else signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # the C-STORE would be waited for 60 s (dimse_timeout)
        elapsed = time.monotonic() - stopped
    finally:
        proc.kill()
        release.set()
        scp.stop()
    assert elapsed < 10, f"stopping took {elapsed:.1f} s"
    assert "Traceback" not in err
    assert proc.returncode == (0 if "SIGTERM" in how else 130), out + err
    if how.startswith("store"):
        return
    listing = json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"]
    assert [job["state"] for job in listing] == ["queued", "queued"]  # not lost, not counted as an attempt
    assert [job["attempts"] for job in listing] == [0, 0]
    outbox.close()


def test_a_file_cut_short_is_refused_when_queued_naming_it(tmp_path, kiosk, storescp):
    made = make_instances(tmp_path / "in", 3)
    victim = sorted(made.values())[1]
    victim.write_bytes(victim.read_bytes()[:-100])
    result = kiosk("send", str(tmp_path / "in"), "--to", storescp.url, "--wait", check=1)
    assert str(victim) in result.stderr and "(7FE0,0010)" in result.stderr and "cut short" in result.stderr
    assert json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"] == []
