"""``kiosk acquire --clip``: the clip is recorded to a file beside the output, capped by
``[acquisition] max_clip_seconds``, handed to the station as one clip capture, then removed."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")

from kiosk.cli import main  # noqa: E402
from kiosk.station import Station  # noqa: E402
from tests.support.video import stall_encoder  # noqa: E402

PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "PID1"]


def test_a_clip_is_recorded_beside_the_output_and_capped(tmp_path, capsys, monkeypatch):
    config = tmp_path / "kiosk.toml"
    config.write_text('[acquisition]\nmax_clip_seconds = 0.6\n\n[video]\npreset = "ultrafast"\nreserve_mb = 0\n')
    out = tmp_path / "out"
    handed = []

    def add_clip(station, capture):
        handed.append((capture, capture.encoded_path.is_file(), capture.encoded_path.parent))

    monkeypatch.setattr(Station, "add_clip", add_clip)
    code = main(["--config", str(config), "acquire", "--source", "demo:camera", "--clip", "5", "-o", str(out),
                 *PATIENT])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--clip 5 s is longer than [acquisition] max_clip_seconds: recording 0.6 s" in err
    [(clip, existed, folder)] = handed
    assert clip.is_clip and existed and folder.parent == out and folder.name.startswith(".clip-")
    assert clip.video.codec == "h264" and 10 <= clip.video.frames <= 19 and clip.frame_rate == 30
    assert f"recorded {clip.video.describe()}" in err
    assert not folder.exists() and list(out.iterdir()) == []  # the recording went once it was handed over


def test_frames_left_out_of_a_clip_are_said(tmp_path, capsys, monkeypatch):
    config = tmp_path / "kiosk.toml"
    config.write_text('[video]\npreset = "superfast"\nreserve_mb = 0\n')
    monkeypatch.setattr(Station, "add_clip", lambda station, capture: None)
    stall_encoder(monkeypatch, 1.0)  # 30 frames come while 6 can wait
    code = main(["--config", str(config), "acquire", "--source", "demo:camera", "--clip", "2", "-o",
                 str(tmp_path / "out"), *PATIENT])
    err = capsys.readouterr().err
    assert code == 0, err
    assert re.search(r"\d+ of \d+ frame\(s\) were left out of the clip: the kiosk could not keep up with the source, "
                     r'so the clip jumps there \(close other programs, or set \[video\] preset = "ultrafast"\)', err), err
