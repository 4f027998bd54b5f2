"""Everything the kiosk writes that holds patient data is 0600 in 0700 folders, even under umask 0022."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import outbox_config
from PIL import Image

from kiosk.config import to_toml

from tests.support.paths import ROOT
UMASK = 0o022  # the usual default: files 0644, folders 0755
PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "P-11"]


def python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            cwd=ROOT, env=env, umask=UMASK, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def kiosk(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, cwd=ROOT,
                            env=env, umask=UMASK, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def not_private(root: Path, include_root: bool = True) -> dict[str, str]:
    """Everything under ``root`` that is not a 0700 folder or a 0600 file, with its mode."""
    found = {}
    paths = ([root] if include_root else []) + sorted(root.rglob("*"))
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            found[str(path.relative_to(root.parent))] = oct(mode)
    return found


def test_session_folders_and_files(tmp_path):
    base = tmp_path / "sessions"
    base.mkdir(mode=0o755)  # a sessions folder made before the rule
    os.chmod(base, 0o755)
    python(f"""
        import numpy as np
        from pathlib import Path

        from kiosk.capture import Capture, EncodedFormat, SourceKind
        from kiosk.session import SessionStore
        from tests.support.video import clip_of, make_video
        from kiosk.study import StudyContext

        session = SessionStore({str(base)!r}).start(StudyContext(patient_name="Doe^Jane", birth_date="19800101"))
        session.add(Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.zeros((8, 8), np.uint8)))
        session.add(Capture(SourceKind.VIDEO_FRAME, encoded=b"\\xff\\xd8jpeg\\xff\\xd9",
                            encoded_format=EncodedFormat.JPEG))
        session.add_clip(clip_of(make_video(Path({str(tmp_path)!r}), seconds=0.2, name="clip.mp4")))
    """)
    (folder,) = base.iterdir()
    assert {p.suffix for p in folder.iterdir()} == {".json", ".npy", ".bin", ".mp4"}
    assert not_private(base) == {}


def test_log_file_and_folder(tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    kiosk("-v", "config", "path", env=env)
    assert not_private(tmp_path / "state" / "kiosk" / "log") == {}


def test_log_from_before_and_rotated_logs(tmp_path):
    """Without the kiosk command's umask too: an old 0644 log is tightened, each new generation is 0600."""
    logs = tmp_path / "state" / "kiosk" / "log"
    logs.mkdir(parents=True)
    os.chmod(logs, 0o755)
    (logs / "kiosk.log").write_text("an old line\n")
    os.chmod(logs / "kiosk.log", 0o644)
    python("""
        import logging
        from kiosk.logsetup import setup_logging

        setup_logging()
        logging.getLogger("kiosk").info("before the rollover")
        for handler in logging.getLogger().handlers:
            if hasattr(handler, "doRollover"):
                handler.doRollover()
        logging.getLogger("kiosk").info("after the rollover")
    """, env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")})
    assert sorted(p.name for p in logs.iterdir()) == ["kiosk.log", "kiosk.log.1"]
    assert not_private(logs) == {}


def test_convert_output(tmp_path):
    image = tmp_path / "page.png"
    Image.new("L", (32, 32), 100).save(image)
    out = tmp_path / "out"
    kiosk("convert", str(image), str(image), "-o", str(out / "new"), *PATIENT)
    assert len(list((out / "new").glob("*.dcm"))) == 2
    assert not_private(out) == {}


def test_acquire_output(tmp_path):
    out = tmp_path / "scans"
    kiosk("acquire", "--source", "demo:scanner", "--dpi", "75", "-o", str(out), *PATIENT)
    assert list(out.glob("*.dcm"))
    assert not_private(out) == {}


def test_outbox_spool_journal_and_folder_export(tmp_path):
    config = tmp_path / "kiosk.toml"
    config.write_text(to_toml(outbox_config(tmp_path)))
    make_instances(tmp_path / "in", 3)
    usb = tmp_path / "usb"
    usb.mkdir()  # the medium: its own folder is the user's
    result = kiosk("--config", str(config), "send", str(tmp_path / "in"), "--to", f"folder:{usb}", "--wait")
    assert "3 of 3 job(s) delivered" in result.stdout
    spool = tmp_path / "spool"
    assert (spool / "journal.sqlite").is_file() and list((spool / "files").iterdir())
    assert not_private(spool) == {}
    assert {p.name for p in usb.iterdir()} >= {"DICOMDIR", "README.TXT", "INDEX.HTM", "IHE_PDI"}
    assert len(received_uids(usb)) == 3
    assert not_private(usb, include_root=False) == {}
