"""A private CUPS server for tests: its own tree, port and error_log, the kiosk's backend and PPD.

The recipe (/work/shared/RECIPES.md "CUPS, a private server for tests"): ServerBin holds symlinks
to Debian's filters (without them no filter runs) and the kiosk's backend; ``ErrorPolicy
abort-job`` so a refused job ends at once. As root, cupsd runs filters and backends as ``lp``:
the tree then lives under a 0755 folder of /tmp (pytest's 0700 tmp root is not traversable) and
the print folder belongs to ``lp``. As another user, cupsd runs everything as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.peers import HOST, Peer, free_port, require_binary, start

BACKEND = ROOT / "packaging" / "cups" / "kiosk-backend"
PPD = ROOT / "packaging" / "cups" / "kiosk.ppd"
CUPS_LIB = Path("/usr/lib/cups")
LINKED = ("filter", "daemon", "cgi-bin", "notifier", "monitor", "driver")


@dataclass
class Cups:
    """A running private cupsd with the queue ``kiosk``; jobs land in ``inbox``."""

    root: Path
    inbox: Path
    peer: Peer

    @property
    def server(self) -> str:
        return f"{HOST}:{self.peer.port}"

    def lp(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``lp -h SERVER -d kiosk ARGS``."""
        return subprocess.run([require_binary("lp"), "-h", self.server, "-d", "kiosk", *args],
                              capture_output=True, text=True, timeout=20, check=check)

    def lpstat(self, *args: str) -> str:
        return subprocess.run([require_binary("lpstat"), "-h", self.server, *args],
                              capture_output=True, text=True, timeout=20).stdout

    def error_log(self) -> str:
        log = self.root / "log" / "error_log"
        return log.read_text(errors="replace") if log.exists() else ""

    def wait_job_done(self, job_id: str, timeout: float = 10.0) -> str:
        """Wait until the job is no longer pending or printing; its ``lpstat -W completed`` line, or ''."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if job_id not in self.lpstat("-W", "not-completed", "-o", "kiosk"):
                return next((line for line in self.lpstat("-W", "completed", "-o", "kiosk").splitlines()
                             if line.startswith(job_id + " ")), "")
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} not done within {timeout} s\n{self.error_log()[-3000:]}")

    def stop(self) -> None:
        self.peer.stop()


def _write_config(root: Path, port: int, set_env: bool) -> tuple[Path, Path]:
    etc = root / "etc"
    files = etc / "cups-files.conf"
    files.write_text("\n".join([
        f"ServerRoot {etc}", f"ServerBin {root / 'bin'}", "DataDir /usr/share/cups",
        f"RequestRoot {root / 'spool'}", f"TempDir {root / 'spool' / 'tmp'}", f"CacheDir {root / 'cache'}",
        f"StateDir {root / 'state'}", f"AccessLog {root / 'log' / 'access_log'}",
        f"ErrorLog {root / 'log' / 'error_log'}", f"PageLog {root / 'log' / 'page_log'}",
        f"Printcap {etc / 'printcap'}", "FileDevice No",
        *([f"SetEnv KIOSK_INBOX {root / 'inbox'}"] if set_env else []), ""]))
    conf = etc / "cupsd.conf"
    conf.write_text(f"""LogLevel info
Listen {HOST}:{port}
Browsing No
WebInterface No
DefaultAuthType None
ErrorPolicy abort-job
<Location />
  Order allow,deny
  Allow 127.0.0.1
</Location>
<Location /admin>
  Order allow,deny
  Allow 127.0.0.1
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
""")
    return conf, files


def start_cups(queue: bool = True) -> Cups:
    """Start cupsd on a free port of 127.0.0.1 with the queue ``kiosk`` (the kiosk's backend and PPD);
    ``queue=False``: a bare server (no backend, no ``SetEnv``, no queue) for packaging/install-print-queue.sh."""
    cupsd, lpadmin = require_binary("cupsd"), require_binary("lpadmin")
    root = Path(tempfile.mkdtemp(prefix="kiosk-cups-", dir="/tmp"))
    root.chmod(0o755)  # as root the backend runs as lp: every parent of the print folder must be traversable
    for sub in ("etc/ppd", "spool/tmp", "cache", "state", "log", "inbox", "bin/backend"):
        (root / sub).mkdir(parents=True)
    # Modes set, not left to the umask: the kiosk's CLI sets 077 in-process (kiosk.cli.main), and lp
    # must traverse to the backend (execv then failed: Permission denied, in a whole run only).
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    for name in LINKED:
        (root / "bin" / name).symlink_to(CUPS_LIB / name)
    if queue:
        backend = root / "bin" / "backend" / "kiosk"
        shutil.copyfile(BACKEND, backend)
        backend.chmod(0o755)  # world-executable: CUPS runs it as lp, not root (0700 would mean root)
    if os.geteuid() == 0:
        lp = pwd.getpwnam("lp")
        os.chown(root / "inbox", lp.pw_uid, lp.pw_gid)
        (root / "inbox").chmod(0o770)
    port = free_port()
    conf, files = _write_config(root, port, set_env=queue)
    peer = start("cupsd", "", port, [cupsd, "-f", "-c", str(conf), "-s", str(files)], root / "log")
    cups = Cups(root, root / "inbox", peer)
    if not queue:
        return cups
    try:
        subprocess.run([lpadmin, "-h", cups.server, "-p", "kiosk", "-E", "-v", "kiosk:/", "-P", str(PPD)],
                       capture_output=True, text=True, timeout=20, check=True)
    except subprocess.CalledProcessError as error:
        cups.stop()
        raise RuntimeError(f"lpadmin: {error.stderr}\n{cups.error_log()}") from None
    return cups


def remove_cups(cups: Cups) -> None:
    cups.stop()
    shutil.rmtree(cups.root, ignore_errors=True)
