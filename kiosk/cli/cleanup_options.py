"""The page clean-up flags of ``kiosk convert`` and ``kiosk acquire`` (kiosk/cleanup.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FLAGS = {
    "deskew": "straighten pages skewed by up to 15 degrees",
    "auto_crop": "crop to the paper (found against a dark scanner lid)",
    "drop_blank": "leave out blank pages (noise, show-through, punch holes); pages with a signature or stamp stay",
    "auto_rotate": "turn pages upright by the direction of their text (0/90/180/270)",
    "clean_borders": "paint the dark edges a scan leaves with the paper's colour",
}


def add_cleanup_options(parser: argparse.ArgumentParser, presets: bool = False) -> None:
    """``--deskew --auto-crop --drop-blank --auto-rotate --clean-borders`` (and, where a scan preset
    brings its own steps, ``--no-cleanup``)."""
    group = parser.add_argument_group("page clean-up" + (" (on top of the preset's; docs/drivers.md)" if presets
                                                         else " (docs/drivers.md)"))
    for step, help_text in FLAGS.items():
        group.add_argument("--" + step.replace("_", "-"), dest=step, action="store_true", help=help_text)
    if presets:
        group.add_argument("--no-cleanup", action="store_true",
                           help="none of the preset's clean-up steps (only those named here)")


def cleanup_from_args(args: argparse.Namespace, preset_steps: dict[str, bool] | None = None) -> Any:
    """A ``kiosk.cleanup.CleanUp``: the preset's steps (unless ``--no-cleanup``), the flags on top."""
    from kiosk.cleanup import CleanUp

    base = {} if getattr(args, "no_cleanup", False) else dict(preset_steps or {})
    return CleanUp.of({step: bool(getattr(args, step, False) or base.get(step, False)) for step in FLAGS})


def note_dropped(count: int, where: str = "") -> None:
    """Say how many blank pages were left out (stderr)."""
    if count:
        print(f"{where}{count} blank page{'s' if count != 1 else ''} left out", file=sys.stderr)
