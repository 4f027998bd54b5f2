"""At the default level, nothing the kiosk logs names a patient (pynetdicom included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from PIL import Image

NAME_PARTS = ("MÜLLER", "JÜRGEN", "ΠΑΠΑΔΟΠΟΥΛΟΣ", "山田")


def kiosk(args, env, extra=()):
    return subprocess.run([sys.executable, "-m", "kiosk", "-v", *extra, *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_worklist_convert_store_log_no_patient_names(tmp_path, wlmscpfs, storescp):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    listing = kiosk(["worklist", "--server", wlmscpfs.url, "--station-aet", "", "--date", "any", "--json"], env)
    assert listing.returncode == 0, listing.stderr
    items = json.loads(listing.stdout)
    assert len(items) == 3
    item = tmp_path / "item.json"
    item.write_text(json.dumps(items[0]))
    image = tmp_path / "page.png"
    Image.new("L", (64, 64), 128).save(image)
    converted = kiosk(["convert", str(image), "-o", str(tmp_path / "out"), "--worklist-item", str(item)], env)
    assert converted.returncode == 0, converted.stderr
    stored = kiosk(["store", str(tmp_path / "out"), "--to", storescp.url], env)
    assert stored.returncode == 0, stored.stderr
    assert list(storescp.extra["received"].iterdir())

    log_file = tmp_path / "state" / "kiosk" / "log" / "kiosk.log"
    logged = log_file.read_text(encoding="utf-8")
    assert logged.strip(), "the commands logged nothing at all: the check below would prove nothing"
    everything = logged + listing.stderr + converted.stderr + stored.stderr
    for part in NAME_PARTS:
        assert part not in everything, f"{part!r} appears in the log or on stderr"


def test_debug_does_log_identifiers(tmp_path, wlmscpfs):
    """The check above can fail: with --debug, pynetdicom's identifier dumps carry the names."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    listing = kiosk(["worklist", "--server", wlmscpfs.url, "--station-aet", "", "--date", "any"], env, ["--debug"])
    assert listing.returncode == 0, listing.stderr
    logged = (tmp_path / "state" / "kiosk" / "log" / "kiosk.log").read_text(encoding="utf-8")
    assert any(part in logged for part in NAME_PARTS)
