"""What ``kiosk send --explain`` prints: per destination, whether it gets the objects, why (the routing
rules), and what its copy gets beyond the file as it is (transfer syntax, coercion, lossy copy, calling
AE title, storage commitment)."""

from __future__ import annotations

from typing import Any, Iterable

from kiosk import transfer_syntaxes as tsx
from kiosk.outbox.shaping import describe
from kiosk.routing import Routed, route


def changes(node: Any) -> list[str]:
    """What sending to ``node`` does beyond delivering the file as it is: one line each."""
    lines = []
    if node.transfer_syntax != tsx.AUTO and tsx.by_name(node.transfer_syntax).lossless:
        lines.append(f"sent in {tsx.by_name(node.transfer_syntax).title}")
    lines += describe(node)  # coercion and lossy copies
    if node.calling_ae_title:
        lines.append(f"calling AE title {node.calling_ae_title}")
    if node.commitment_node:
        lines.append(f"storage commitment asked of {node.commitment_node}")
    elif node.storage_commitment:
        lines.append("storage commitment asked")
    return lines


def explain(config: Any, objects: Iterable[Routed], chosen: Iterable[str] | None = None) -> list[str]:
    """``kiosk send --explain``: per destination, whether it gets the objects, why, and what is changed.
    ``chosen``: the destinations named on the command line (else routing decides)."""
    objects = list(objects)
    routed = route(config, objects)
    chosen = list(chosen) if chosen is not None else list(routed)
    lines = []
    for name, node in config.destinations.items():
        kind = "STOW-RS" if node.stow_url else "C-STORE"
        lines.append(f"{name}: {node.stow_url or f'{node.ae_title}@{node.host}:{node.port}'} ({kind})")
        if name not in chosen:
            lines.append("  not chosen" + ("" if name in routed else ": no rule sends these objects there"))
            continue
        why = routed.get(name)
        lines.append("  chosen: " + ("named with --to" if why is None else "; ".join(why) or "every destination"))
        lines += [f"  {line}" for line in changes(node) or ["files sent as they are"]]
    for name in chosen:
        if name not in config.destinations:
            lines.append(f"{name}: named with --to (not configured: files sent as they are)")
    return lines
