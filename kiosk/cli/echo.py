"""``kiosk echo NODE``: is the peer there and answering DICOM?"""

from __future__ import annotations

import argparse

from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("echo", help="check a DICOM node with C-ECHO and show the round-trip time")
    parser.add_argument("node", help="a configured node name (destination, worklist, query) or AET@host:port")
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Config) -> int:
    from kiosk.config import resolve_node
    from kiosk.net.echo import echo

    node = resolve_node(config, args.node, role="node")
    result = echo(node, config.local)
    ok = result.status == 0x0000
    word = "OK" if ok else f"status 0x{result.status:04X}"
    print(f"{node}: {word}, C-ECHO round trip {result.round_trip * 1000:.1f} ms "
          f"(with association set-up {result.total * 1000:.1f} ms)")
    return 0 if ok else 1
