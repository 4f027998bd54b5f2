"""``kiosk inbox run --once|list`` and the delivery service watching the inbox, as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from kiosk.config import to_toml
from tests.inbox.inbox_helpers import drop, inbox_config, text_pdf
from tests.support.outbox_helpers import cli


@pytest.fixture(autouse=True)
def private_user_data(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def _kiosk(tmp_path, **kwargs):
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(inbox_config(tmp_path, **kwargs)))
    return cli(path), path


def test_inbox_run_once_then_list_shows_what_waits_and_why(tmp_path):
    kiosk, _ = _kiosk(tmp_path, name_pattern=r"^(?P<patient_id>PID\d+)_")
    watched = tmp_path / "watched"
    drop(watched, "letter.pdf", text_pdf("Letter"))
    drop(watched, "broken.pdf", b"%PDF-1.4 cut")
    time.sleep(0.4)
    result = kiosk("inbox", "run", "--once", check=1)  # a file went to failed/
    assert f"held    letter.pdf: the name does not match name_pattern  -> {watched / 'held' / 'letter.pdf'}" \
        in result.stdout
    assert "failed  broken.pdf: is a truncated PDF" in result.stdout
    listing = kiosk("inbox", "list").stdout
    assert "folder  letter.pdf" in listing and "the name does not match name_pattern" in listing
    assert "1 document(s) waiting" in listing
    [item] = json.loads(kiosk("inbox", "list", "--json").stdout)
    assert item["name"] == "letter.pdf" and item["source"] == "folder" and item["path"].endswith("document.pdf")
    assert kiosk("inbox", "run", "--once").stdout == ""  # nothing new


def test_inbox_run_without_anything_to_watch_says_what_to_set(tmp_path):
    kiosk, _ = _kiosk(tmp_path, folder="", print_folder=str(tmp_path / "no-print"))
    result = kiosk("inbox", "run", "--once", check=2)
    assert "there is nothing to watch" in result.stderr and "[inbox] folder" in result.stderr
    assert "the Inbox is empty" in kiosk("inbox", "list").stdout


def test_the_delivery_service_files_and_delivers_the_inbox(tmp_path, wlmscpfs, storescp):
    _, path = _kiosk(tmp_path, worklist=wlmscpfs, name_pattern=r"^(?P<patient_id>PID\d+)_", send_to=[storescp.url])
    service = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(path), "outbox", "run",
                                "--poll", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        drop(tmp_path / "watched", "PID100_scan.pdf", text_pdf("Scan"))
        received = storescp.extra["received"]
        deadline = time.monotonic() + 20
        while not any(received.rglob("*.*")) and time.monotonic() < deadline and service.poll() is None:
            time.sleep(0.1)
    finally:
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    assert "Traceback" not in err
    assert [p.name for p in (tmp_path / "watched" / "done").iterdir()] == ["PID100_scan.pdf"]
    assert len([p for p in received.rglob("*") if p.is_file()]) == 1
