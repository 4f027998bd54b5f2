"""``kiosk devices [URI] [--json]``: what is attached, what a device can do, which drivers are missing."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "devices", help="list scanners, cameras and capture cards (and drivers that cannot be used)",
        description="With no URI: list attached devices, unavailable drivers and the scan presets "
        "(built-in and [presets.NAME] from the config). "
        "With a URI (e.g. sane:test:0): open that device and show its capabilities.")
    parser.add_argument("uri", nargs="?", help="a device to open and describe, e.g. sane:test:0 or video:/dev/video0")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Any) -> int:
    if args.uri:
        return _describe(args.uri, args.json)
    from drivers.presets import presets
    from drivers.registry import discover_all

    found = discover_all()
    table = presets(config.presets.tables())
    if args.json:
        print(json.dumps({"devices": [dataclasses.asdict(d) for d in found.devices],
                          "unavailable": found.unavailable,
                          "presets": {name: _preset_dict(s) for name, s in table.items()}}, indent=2))
        return 0
    width = max((len(d.uri) for d in found.devices), default=0)
    for device in found.devices:
        detail = f" ({device.detail})" if device.detail else ""
        print(f"{device.uri:<{width}}  {device.kind:<8} {device.name}{detail}")
    if not found.devices:
        print("no devices found")
    for scheme, why in found.unavailable.items():
        print(f"unavailable: {scheme}: {why}")
    print("presets:")
    for name, settings in table.items():
        values = _preset_dict(settings)
        print(f"  {name}: {values['mode']}, {values['depth']}-bit, {values['dpi']:g} dpi, {values['source']}"
              + (", film" if values["film"] else ""))
    return 0


def _preset_dict(settings: Any) -> dict[str, Any]:
    from drivers.presets import PRESET_KEYS

    return {key: getattr(settings, key) for key in PRESET_KEYS}


def _describe(uri: str, as_json: bool) -> int:
    from drivers.registry import open_device

    with open_device(uri) as device:
        caps = dataclasses.asdict(device.capabilities())
    info = dataclasses.asdict(device.info)
    if as_json:
        print(json.dumps({"device": info, "capabilities": caps}, indent=2))
        return 0
    print(f"{info['uri']}: {info['name']} ({info['kind']})")
    for key, value in caps.items():
        if value in ((), None, False):
            continue
        if key == "resolutions":
            text = f"{value[0]:g} to {value[1]:g} dpi"
        elif key == "area_mm":
            text = f"{value[0]:g} x {value[1]:g} mm"
        elif key == "frame_sizes":
            text = ", ".join(f"{w}x{h}" for w, h in value)
        else:
            text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) \
                if isinstance(value, (list, tuple)) else value
        label = "scan area" if key == "area_mm" else key.replace("_", " ")
        print(f"  {label}: {text}")
    return 0
