"""The print queue ``kiosk`` end to end: a private cupsd, the kiosk's backend and PPD, ``lp`` as users print."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess

import pytest
from PIL import Image

from tests.support.cups import BACKEND, remove_cups, start_cups
from tests.support.netns import need_isolation
from tests.support.peers import require_binary


@pytest.fixture(scope="module")
def cups():
    need_isolation()
    require_binary("cupsd")
    server = start_cups()
    yield server
    remove_cups(server)


@pytest.fixture
def inbox(cups):
    """The print folder, emptied after each test."""
    yield cups.inbox
    for path in cups.inbox.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def job_id(result: subprocess.CompletedProcess) -> str:
    """``request id is kiosk-3 (1 file(s))`` -> ``kiosk-3``."""
    return result.stdout.split()[3]


def arrived(inbox) -> dict[str, tuple[bytes, dict]]:
    """The complete pairs in the print folder: name -> (PDF bytes, sidecar)."""
    names = [path.name for path in inbox.iterdir()]
    assert not [name for name in names if name.startswith(".")], f"temporary files left: {names}"
    pairs = {}
    for sidecar in inbox.glob("*.json"):
        pdf = sidecar.with_suffix(".pdf")
        pairs[sidecar.stem] = (pdf.read_bytes(), json.loads(sidecar.read_text()))
    assert len(names) == 2 * len(pairs), names
    return pairs


def test_a_pdf_arrives_unchanged_with_its_title_user_and_host(cups, inbox, tmp_path):
    pdf = tmp_path / "referral.pdf"
    Image.new("RGB", (400, 300), "white").save(pdf)
    job = job_id(cups.lp("-t", "Referral K000123", str(pdf)))
    assert cups.wait_job_done(job)
    pairs = arrived(inbox)
    assert len(pairs) == 1, cups.error_log()[-2000:]
    (data, sidecar), = pairs.values()
    assert data == pdf.read_bytes()
    assert sidecar["title"] == "Referral K000123"
    assert sidecar["user"] == getpass.getuser()
    assert sidecar["host"] == "localhost"
    assert sidecar["job_id"] == job.rsplit("-", 1)[1]
    assert sidecar["time"][:4].isdigit() and "T" in sidecar["time"]
    if os.geteuid() == 0:  # written by lp, readable through the folder's group
        stat = (inbox / f"{next(iter(pairs))}.pdf").stat()
        assert stat.st_uid != 0 and stat.st_mode & 0o777 == 0o640


@pytest.mark.parametrize("kind", ["png", "text"])
def test_images_and_text_arrive_as_pdf(cups, inbox, tmp_path, kind):
    if kind == "png":
        document = tmp_path / "photo.png"
        Image.new("RGB", (300, 200), (200, 30, 30)).save(document)
    else:
        document = tmp_path / "note.txt"
        document.write_text("Consent form\nSigned by the patient.\n")
    job = job_id(cups.lp("-t", f"A {kind} job", str(document)))
    cups.wait_job_done(job)
    pairs = arrived(inbox)
    assert len(pairs) == 1, cups.error_log()[-3000:]
    (data, sidecar), = pairs.values()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]
    assert sidecar["title"] == f"A {kind} job"
    assert sidecar["content_type"] == ("image/png" if kind == "png" else "text/plain")


def test_raw_bytes_that_are_no_pdf_are_refused(cups, inbox, tmp_path):
    junk = tmp_path / "scan.bin"
    junk.write_bytes(b"\x1b%-12345X@PJL JOB\r\n" + os.urandom(2000))
    job = job_id(cups.lp("-o", "raw", "-t", "Raw job", str(junk)))
    line = cups.wait_job_done(job)
    assert line, "the refused job is not listed as completed (cancelled)"
    assert list(inbox.iterdir()) == []
    assert f"job {job.rsplit('-', 1)[1]} is not a PDF" in cups.error_log()
    assert "kiosk" in cups.lpstat("-p") and "disabled" not in cups.lpstat("-p")  # the queue keeps working


def run_backend(*args: str, env: dict | None = None, data: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/python3", str(BACKEND), *args], input=data, capture_output=True, timeout=20,
                          env={"PATH": os.defpath, **(env or {})})


def test_without_arguments_the_backend_names_its_device():
    result = run_backend()
    assert result.returncode == 0
    assert result.stdout.decode().strip() == 'direct kiosk "Unknown" "Kiosk"'


def test_the_backend_reads_stdin_and_needs_its_folder(tmp_path):
    pdf = b"%PDF-1.4\n% a tiny stand-in\n%%EOF\n"
    assert run_backend("7", "alice", "Report", "1", "", data=pdf).returncode == 1  # no KIOSK_INBOX
    result = run_backend("7", "alice", "Report", "1", "job-originating-host-name=ward-pc",
                         env={"KIOSK_INBOX": str(tmp_path)}, data=pdf)
    assert result.returncode == 0, result.stderr
    (sidecar,) = tmp_path.glob("*.json")
    assert json.loads(sidecar.read_text())["host"] == "ward-pc"
    assert sidecar.with_suffix(".pdf").read_bytes() == pdf


def test_an_unwritable_folder_fails_the_job_and_leaves_nothing(tmp_path):
    missing = tmp_path / "gone"
    result = run_backend("8", "bob", "Report", "1", "", env={"KIOSK_INBOX": str(missing)}, data=b"%PDF-1.4\n")
    assert result.returncode == 1
    assert b"cannot write job 8" in result.stderr
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_a_print_job_reaches_the_inbox_with_its_title_user_and_host(cups, inbox, tmp_path, monkeypatch):
    """The whole path: lp -> cupsd -> the backend -> the print folder -> the inbox runner -> held in the Inbox."""
    import time

    from kiosk.inbox.runner import run_once
    from kiosk.inbox.store import Inbox
    from tests.inbox.inbox_helpers import inbox_config, text_pdf

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    config = inbox_config(tmp_path, print_folder=str(inbox), settle_seconds=0.2)
    pdf = tmp_path / "consent.pdf"
    pdf.write_bytes(text_pdf("Consent form"))
    cups.wait_job_done(job_id(cups.lp("-t", "Consent form", str(pdf))))
    time.sleep(0.3)  # the runner takes files unchanged for settle_seconds
    outcomes = run_once(config).outcomes
    assert [o.action for o in outcomes] == ["held"], outcomes
    (item,) = Inbox(config).held()
    assert (item.source, item.name, item.user, item.host) == ("print", "Consent form", getpass.getuser(), "localhost")
    assert item.path.read_bytes() == pdf.read_bytes()
    assert not list(inbox.glob("*.json"))  # taken from the print folder (moved to held/)
