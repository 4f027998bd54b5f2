"""The `kiosk` command itself: help, version, lazy imports, error reporting, logging."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk import __version__
from kiosk.cli import SUBCOMMANDS, build_parser, main
from kiosk.logsetup import LOG_FILENAME, log_dir


def run_kiosk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_subcommand():
    result = run_kiosk("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_version():
    result = run_kiosk("--version")
    assert result.stdout.strip() == f"kiosk {__version__}"


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "from kiosk.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('pydicom', 'pynetdicom', 'kivy', 'cv2', 'sane', 'numpy', 'PIL') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_unknown_subcommand_is_a_usage_error():
    result = run_kiosk("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_internal_error_is_one_line_without_traceback_unless_debug(monkeypatch, capsys):
    parser = build_parser()

    def boom(_args, _config):
        raise RuntimeError("disk on fire")

    args = parser.parse_args(["config", "show"])
    monkeypatch.setattr("kiosk.cli.build_parser", lambda **_: _Fixed(parser, args, boom))
    assert main(["config", "show"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: disk on fire" in err
    assert "--debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["--debug", "config", "show"])


class _Fixed:
    """A parser stand-in returning prepared arguments with a chosen run function."""

    def __init__(self, parser, args, run):
        self.parser, self.args = parser, args
        args.run = run
        args.debug = False

    def parse_args(self, argv):
        self.args.debug = "--debug" in argv
        return self.args

    def print_help(self):
        self.parser.print_help()


def test_logging_goes_to_a_file_and_keeps_pynetdicom_quiet(tmp_path):
    assert main(["config", "path"]) == 0
    assert logging.getLogger("pynetdicom").level == logging.WARNING
    logging.getLogger("kiosk.test").info("hello from the test")
    path = log_dir() / LOG_FILENAME
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "hello from the test" in Path(path).read_text()
    assert main(["--debug", "config", "path"]) == 0
    assert logging.getLogger("pynetdicom").level == logging.DEBUG
    main(["config", "path"])
