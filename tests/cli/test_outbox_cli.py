"""``kiosk send`` and ``kiosk outbox ...`` as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import ScriptedSCP, cli, outbox_config
from tests.support.peers import HOST, free_port

from kiosk.config import to_toml
from kiosk.outbox import Outbox


@pytest.fixture
def kiosk(tmp_path):
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(outbox_config(tmp_path)))

    return cli(config_file)


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


def test_a_helper_slow_to_start_still_gets_a_request_larger_than_a_pipe(tmp_path, storescp):
    """The request to the helper (its file names) used to stop after what fit in the pipe (64 KB) when the
    helper had not read it within 0.1 s: with 10,000 files on a busy machine both processes waited for ever.
    A sitecustomize that sleeps makes every Python here, the helper too, start slowly."""
    from kiosk.cli.send import HELPER_MIN

    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(0.5)\n")
    folder = tmp_path / "in"
    made = make_instances(folder, HELPER_MIN + 50)
    for index, path in enumerate(made.values()):
        path.rename(folder / f"{index:05d}{'x' * 240}.dcm")  # 270 files x 300 bytes of names: over 64 KB
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(outbox_config(tmp_path)))
    env = {**os.environ, "PYTHONPATH": f"{slow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config_file), "send", str(folder),
                             "--to", storescp.url, "--wait"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert f"{len(made)} of {len(made)} job(s) delivered" in result.stdout


def test_a_stray_file_among_many_queues_nothing_and_says_which(tmp_path, kiosk, storescp):
    from kiosk.cli.send import HELPER_MIN

    make_instances(tmp_path / "in", HELPER_MIN + 5)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    result = kiosk("send", str(tmp_path / "in"), "--to", storescp.url, "--wait", check=1)
    assert "notes.txt" in result.stderr and "Part 10" in result.stderr
    assert json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"] == []
    assert list(storescp.extra["received"].iterdir()) == []


def _without_group_length(path):
    """Drop (0002,0000) from a Part 10 file: still valid, but only pydicom's full reader takes it."""
    data = path.read_bytes()
    assert data[132:136] == b"\x02\x00\x00\x00"
    path.write_bytes(data[:132] + data[144:])


def test_send_wait_delivers_a_file_without_group_length_every_time(tmp_path, kiosk, storescp):
    # The main thread's pydicom import raced the delivery thread's pynetdicom import ("circular import").
    for attempt in range(4):
        made = make_instances(tmp_path / f"in{attempt}", 1)
        _without_group_length(next(iter(made.values())))
        result = kiosk("send", str(tmp_path / f"in{attempt}"), "--to", storescp.url, "--wait")
        assert "1 of 1 job(s) delivered" in result.stdout
    assert len(received_uids(storescp.extra["received"])) == 4


def test_send_wait_refuses_a_non_dicom_file_clearly_every_time(tmp_path, kiosk, storescp):
    (tmp_path / "notes.txt").write_text("not an image")
    for _attempt in range(4):
        result = kiosk("send", str(tmp_path / "notes.txt"), "--to", storescp.url, "--wait", check=1)
        assert "notes.txt: not a DICOM Part 10 file" in result.stderr and "internal error" not in result.stderr
    assert json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"] == []


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _closed_within(seconds: float, *pipes) -> bool:
    """Whether every pipe reaches end-of-file (all its writers gone) within ``seconds``."""
    with selectors.DefaultSelector() as selector:
        for pipe in pipes:
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                if key.fileobj.read() == b"":
                    selector.unregister(key.fileobj)
        return not selector.get_map()


def test_killing_send_wait_while_its_helper_accepts_leaves_no_process_and_closes_stdout(tmp_path):
    from kiosk.cli.send import HELPER_MIN

    made = make_instances(tmp_path / "in", HELPER_MIN * 3)
    digests = {hashlib.sha256(path.read_bytes()).hexdigest() for path in made.values()}
    config = outbox_config(tmp_path)
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(config))
    down = f"PACS@{HOST}:{free_port()}"  # nothing listens: the jobs wait
    for delay, sig in ((0.0, signal.SIGKILL), (0.1, signal.SIGKILL), (0.2, signal.SIGTERM), (0.3, signal.SIGKILL),
                       (0.5, signal.SIGTERM), (0.8, signal.SIGKILL)):
        # stdout and stderr are pipes, as in $(kiosk send ...): they must close when kiosk dies.
        sender = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(config_file), "send",
                                   str(tmp_path / "in"), "--to", down, "--wait"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        children: list[int] = []
        try:
            deadline = time.monotonic() + 30
            while not (children := _children(sender.pid)):
                assert sender.poll() is None and time.monotonic() < deadline, "no helper process started"
                time.sleep(0.01)
            time.sleep(delay)
            children += _children(sender.pid)
            sender.send_signal(sig)
            sender.wait()
            assert _closed_within(10, sender.stdout, sender.stderr), f"stdout/stderr still open ({sig!r}, {delay} s)"
            deadline = time.monotonic() + 10
            while not all(_gone(child) for child in children) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert all(_gone(child) for child in children), f"a child survived {sig!r} {delay} s into accepting"
        finally:
            sender.kill()
            sender.wait()
            for child in children:
                if not _gone(child):
                    os.kill(child, signal.SIGKILL)
            sender.stdout.close()
            sender.stderr.close()
    # What was accepted stays accepted, and every file published in the spool is complete
    # (a chunk being copied stays .part files: never sent, deleted by recovery).
    outbox = Outbox.from_config(config)
    try:
        for job in outbox.journal.jobs():
            assert hashlib.sha256(outbox.spool.path(job.spool_name).read_bytes()).hexdigest() == job.sha256
        for path in outbox.spool.files.glob("*.dcm"):
            assert hashlib.sha256(path.read_bytes()).hexdigest() in digests, f"{path.name} is incomplete"
    finally:
        outbox.close()


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

    from tests.support.net_data import ScriptedSCP as PlainSCP

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
        from tests.support.outbox_helpers import queue

        queue(outbox, outbox_config(tmp_path), list(made.values()), scp.url)
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


def test_outbox_list_and_show_print_no_control_characters_from_a_peer(tmp_path, kiosk):
    """A PACS's error comment ends up in the job's reason; the terminal gets it without ESC or CR."""
    scp = ScriptedSCP(statuses=[0xA900], comment="bad\x1b[2J\rdata")
    try:
        make_instances(tmp_path / "in", 1)
        kiosk("send", str(tmp_path / "in"), "--to", scp.url, "--wait", check=1)
        for args in (("outbox", "list"), ("outbox", "show", "1")):
            out = kiosk(*args).stdout
            assert "bad\ufffd[2J\ufffddata" in out and "\x1b" not in out and "\r" not in out
    finally:
        scp.stop()
