"""Real acquisition sources for driver tests: SANE's test backend and a live ffmpeg stream."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.peers import HOST, require_binary

# Options of SANE's test backend that tests change; the backend keeps them per
# device for the life of the process, so they are put back after every test.
SANE_TEST_DEFAULTS = {"read_return_value": "Default", "read_delay": False, "source": "Flatbed",
                      "test_picture": "Solid black"}


def write_sane_config(directory: Path) -> Path:
    """A private SANE_CONFIG_DIR with only the test backend (two devices, A4-sized bed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dll.conf").write_text("test\n")
    (directory / "test.conf").write_text("number_of_devices 2\ngeometry_max 300.0\n")
    return directory


@dataclass
class Stream:
    """ffmpeg serving ``clip`` (MJPEG) in a loop, paced in real time, on one TCP connection.

    The frames are copied, not encoded while serving: like a capture card's, they cost the
    machine nothing (encoding 1080p30 live took half of one of the two cores the code under
    test runs on).
    """

    port: int
    clip: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tcp://{HOST}:{self.port}"

    def start(self) -> "Stream":
        ffmpeg = require_binary("ffmpeg")
        self.proc = subprocess.Popen(
            [ffmpeg, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
             "-c", "copy", "-f", "matroska", f"{self.url}?listen=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_listen(self.port, self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


def wait_for_listen(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait for a listening socket without connecting (ffmpeg serves exactly one connection)."""
    deadline = time.monotonic() + timeout
    suffix = f":{port:04X}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ffmpeg exited with code {proc.returncode} before listening")
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            # Fields: sl local_address rem_address st ...; state 0A is LISTEN.
            if any(f[1].endswith(suffix) and f[3] == "0A" for f in map(str.split, lines)):
                return
        time.sleep(0.05)
    raise RuntimeError(f"ffmpeg did not listen on port {port} within {timeout} s")
