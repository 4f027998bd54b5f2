"""``kiosk demo --headless``: the demo peers answer the kiosk's own command-line tools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def run_kiosk(*args, env):
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, env=env, timeout=60)


def test_headless_demo_serves_worklist_and_echo(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "demo", "--headless", "--dir", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C" in line or not line:
                break
        text = "".join(lines)
        assert "DEMOPACS@127.0.0.1:" in text and "DEMOWL@127.0.0.1:" in text, text
        config = str(tmp_path / "demo" / "kiosk-demo.toml")
        echo = run_kiosk("--config", config, "echo", "demo-pacs", env=env)
        assert echo.returncode == 0, echo.stderr
        worklist = run_kiosk("--config", config, "worklist", env=env)
        assert worklist.returncode == 0, worklist.stderr
        assert "A1003" in worklist.stdout and "ΠΑΠΑΔΟΠΟΥΛΟΣ" in worklist.stdout
    finally:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # still fail the test, but leave no demo running
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
