"""``kiosk echo NODE``: is the peer there and answering DICOM (C-ECHO, or for a DICOMweb node a QIDO-RS search)?"""

from __future__ import annotations

import argparse

from kiosk.config import Config, NodeConfig


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("echo", help="check a DICOM node with C-ECHO (a DICOMweb one with a QIDO-RS search) "
                                         "and show the round-trip time")
    parser.add_argument("node", help="a configured node name (destination, worklist, query) or AET@host:port")
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Config) -> int:
    from kiosk.config import resolve_node
    from kiosk.net.echo import echo

    node = resolve_node(config, args.node, role="node")
    if node.stow_url:
        return _check_stow(node)
    result = echo(node, config.local)
    ok = result.status == 0x0000
    word = "OK" if ok else f"status 0x{result.status:04X}"
    print(f"{node}: {word}, C-ECHO round trip {result.round_trip * 1000:.1f} ms "
          f"(with association set-up {result.total * 1000:.1f} ms)")
    return 0 if ok else 1


def _check_stow(node: NodeConfig) -> int:
    """A DICOMweb node: reachable, TLS verified and credentials taken (a QIDO-RS search), or a NetworkError."""
    from kiosk.net.stow import check

    result = check(node)
    print(f"{node}: OK, QIDO-RS search answered HTTP {result.http_status} in {result.round_trip * 1000:.1f} ms "
          "(reachable, credentials accepted)")
    return 0
