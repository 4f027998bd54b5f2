"""Source URIs -> drivers: the scheme registry, ``open_device`` and ``discover_all``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from drivers.device import Device, DeviceInfo, Driver
from drivers.errors import DriverError
from kiosk.errors import UsageError

# Scheme -> "module:Class"; imported only when asked for, so optional
# dependencies never load at start-up.
REGISTRY: dict[str, str] = {
    "sane": "drivers.sane:SaneDriver",
    "video": "drivers.video:VideoDriver",
    "file": "drivers.file_driver:FileDriver",
    "demo": "drivers.demo_devices:DemoDriver",
}

_instances: dict[str, Driver] = {}


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``scheme:target``; UsageError for an unknown scheme."""
    scheme, sep, target = uri.partition(":")
    if not sep or scheme not in REGISTRY:
        raise UsageError(f"{uri!r} is not a source this kiosk knows",
                         f"write SCHEME:TARGET with SCHEME one of {', '.join(REGISTRY)} (e.g. demo:scanner)")
    if not target:
        raise UsageError(f"{uri!r} names no device", "e.g. sane:test:0, video:/dev/video0, file:scan.pdf")
    return scheme, target


def get_driver(scheme: str) -> Driver:
    """The driver for a scheme (one instance per process)."""
    if scheme not in _instances:
        if scheme not in REGISTRY:
            raise UsageError(f"no driver for {scheme!r}", f"use one of {', '.join(REGISTRY)}")
        module, _, cls = REGISTRY[scheme].partition(":")
        _instances[scheme] = getattr(importlib.import_module(module), cls)()
    return _instances[scheme]


def all_drivers() -> list[Driver]:
    return [get_driver(scheme) for scheme in REGISTRY]


def open_device(uri: str, options: Mapping[str, Any] | None = None) -> Device:
    """Open the device a source URI names; raises a DriverError subclass for people."""
    scheme, target = parse_uri(uri)
    driver = get_driver(scheme)
    driver.require()
    return driver.open(target, options)


@dataclass
class Discovery:
    """What ``discover_all`` found: devices, and drivers that cannot be used with why."""

    devices: list[DeviceInfo] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def discover_all() -> Discovery:
    """Ask every driver for its devices; a missing dependency or failure is reported, not raised."""
    found = Discovery()
    for driver in all_drivers():
        problem = driver.problem()
        if problem:
            found.unavailable[driver.scheme] = problem
            continue
        try:
            found.devices.extend(driver.discover())
        except DriverError as error:
            found.unavailable[driver.scheme] = str(error)
    return found
