"""``kiosk demo``: the touch UI against embedded demo peers and demo devices, no setup needed.

``--headless`` runs only the peers and prints their addresses and a config
file for the other commands, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="try the kiosk: demo PACS, worklist and devices on this computer")
    parser.add_argument("--headless", action="store_true", help="run only the demo peers and print their addresses")
    parser.add_argument("--dir", metavar="DIR", help="keep the demo's files here (default: a new temporary folder)")
    parser.set_defaults(run=run, needs_config=False)


def start(folder: Path):
    """Start the peers and write a config using them; returns (peers, config)."""
    from kiosk.config import load_config, to_toml
    from kiosk.demo_peers import demo_disc, start_demo_peers

    peers = start_demo_peers(folder / "pacs")
    demo_disc(folder / "media")  # "inserted": the Acquire screen offers Disc or USB (DICOM)
    config = peers.config()
    config = replace(config, outbox=replace(config.outbox, spool_dir=str(folder / "outbox"), min_free_mb=50,
                                            retry_interval=5.0),
                     ui=replace(config.ui, sessions_dir=str(folder / "sessions")),
                     media=replace(config.media, mount_points=[str(folder / "media")]))
    path = folder / "kiosk-demo.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    return peers, load_config(path)


def run(args: argparse.Namespace, _config: Config | None) -> int:
    folder = Path(args.dir).expanduser() if args.dir else Path(tempfile.mkdtemp(prefix="kiosk-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    peers, config = start(folder)
    try:
        print(f"demo PACS (storage, storage commitment): {peers.pacs_url}, keeps objects in {peers.received}")
        print(f"demo worklist: {peers.worklist_url} ({len(peers.items)} patients scheduled today)")
        print(f"demo CD from another hospital: {folder / 'media' / 'OUTSIDE_CD'} (kiosk media list ...; in the UI: "
              "choose MÜLLER^JÜRGEN, then Disc or USB)")
        print(f"configuration for other commands: kiosk --config {config.path} ...")
        if args.headless:
            print("press Ctrl-C to stop", flush=True)
            threading.Event().wait()
            return 0
        print(f"admin PIN for Settings: {config.ui.admin_pin}", flush=True)
        from kiosk.ui.launch import run_ui

        return run_ui(config, demo=peers)
    finally:
        peers.stop()
