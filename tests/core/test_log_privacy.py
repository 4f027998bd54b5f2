"""At the default level, nothing the kiosk logs names a patient (pynetdicom included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
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


BAD_BIRTH_DATE = "19801340"


def _bad_birth_date_item():
    from tests.support.worklist_data import make_worklist_item

    with warnings.catch_warnings():  # pydicom's warning about the value we mean to send
        warnings.simplefilter("ignore")
        return make_worklist_item("MÜLLER^JÜRGEN", "PID100", "ACC100", "ISO_IR 100", birth_date=BAD_BIRTH_DATE)


@pytest.mark.parametrize("worklist_items", [[_bad_birth_date_item()]])
@pytest.mark.parametrize("level", [(), ("-v",)], ids=["default", "verbose"])
def test_library_warnings_mask_values(tmp_path, wlmscpfs, level):
    """pydicom's warnings quote the offending value (a birth date): logged and shown masked."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}

    def run(args):
        return subprocess.run([sys.executable, "-m", "kiosk", *level, *args], capture_output=True, text=True,
                              env=env, timeout=120)

    listing = run(["worklist", "--server", wlmscpfs.url, "--station-aet", "", "--date", "any", "--json"])
    assert listing.returncode == 0, listing.stderr
    item = tmp_path / "item.json"
    item.write_text(listing.stdout)
    image = tmp_path / "page.png"
    Image.new("L", (64, 64), 128).save(image)
    # The clerk corrects the birth date the RIS sent; reading the item still meets the bad value.
    converted = run(["convert", str(image), "-o", str(tmp_path / "out"), "--worklist-item", str(item),
                     "--birth-date", "19800101"])
    assert converted.returncode == 0, converted.stderr

    logged = (tmp_path / "state" / "kiosk" / "log" / "kiosk.log").read_text(encoding="utf-8")
    everything = logged + listing.stderr + converted.stderr
    assert "Invalid value for VR DA: <masked>" in logged
    assert "Invalid value for VR DA: <masked>" in converted.stderr
    for secret in (BAD_BIRTH_DATE, *NAME_PARTS[:2]):
        assert secret not in everything, f"{secret!r} appears in the log or on stderr"
