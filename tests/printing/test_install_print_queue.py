"""packaging/install-print-queue.sh against a private cupsd: install, print, run again, --remove."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess

import pytest

from tests.support.cups import remove_cups, start_cups
from tests.support.netns import need_isolation
from tests.support.paths import ROOT
from tests.support.peers import require_binary

SCRIPT = ROOT / "packaging" / "install-print-queue.sh"


@pytest.fixture
def bare_cups():
    need_isolation()
    require_binary("cupsd")
    if os.geteuid() != 0:
        pytest.skip("the install script runs as root (it makes the print folder lp's)")
    server = start_cups(queue=False)
    yield server
    remove_cups(server)


def install(cups, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUPS_SERVERROOT": str(cups.root / "etc"), "CUPS_SERVERBIN": str(cups.root / "bin"),
           "CUPS_SERVER": cups.server, "CUPS_RESTART": f"kill -HUP {cups.peer.proc.pid}"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_install_print_again_and_remove(bare_cups, tmp_path):
    cups = bare_cups
    folder = cups.root / "print"
    result = install(cups, "--user", "root", "--folder", str(folder))
    assert result.returncode == 0, result.stderr + cups.error_log()[-2000:]
    assert f'print_folder = "{folder}"' in result.stdout
    stat = folder.stat()
    assert (pwd.getpwuid(stat.st_uid).pw_name, grp.getgrgid(stat.st_gid).gr_name) == ("lp", "root")
    assert stat.st_mode & 0o7777 == 0o2770
    backend = cups.root / "bin" / "backend" / "kiosk"
    assert backend.stat().st_uid == 0 and backend.stat().st_mode & 0o777 == 0o755

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% stand-in\n%%EOF\n")
    job = cups.lp("-t", "Report", str(pdf)).stdout.split()[3]
    cups.wait_job_done(job)
    (sidecar,) = folder.glob("*.json")
    assert sidecar.with_suffix(".pdf").read_bytes() == pdf.read_bytes()
    assert sidecar.stat().st_gid == 0  # the folder's group (setgid), so the kiosk's user reads it

    again = install(cups, "--user", "root", "--folder", str(folder))
    assert again.returncode == 0, again.stderr
    conf = (cups.root / "etc" / "cups-files.conf").read_text()
    assert conf.count("SetEnv KIOSK_INBOX") == 1

    removed = install(cups, "--remove")
    assert removed.returncode == 0, removed.stderr
    assert not backend.exists()
    assert "KIOSK_INBOX" not in (cups.root / "etc" / "cups-files.conf").read_text()
    assert "kiosk" not in cups.lpstat("-p")
    assert sidecar.exists()  # the print folder and its files are kept


def test_refuses_without_a_user(bare_cups):
    env_less = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                            env={**env_less, "CUPS_SERVERROOT": str(bare_cups.root / "etc")})
    assert result.returncode == 2 and "--user USER" in result.stderr
