"""Settings (behind the admin PIN): this station, destinations with Echo, worklist with Test, kiosk options.

Saving re-validates the whole configuration with ``kiosk.config.parse_config``
and writes the same TOML file atomically; nothing is saved while any value is
wrong. Network settings apply after a restart of the kiosk.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from kivy.factory import Factory
from kivy.properties import StringProperty

from kiosk.config import ConfigError, parse_config, to_toml
from kiosk.errors import KioskError
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.strings import T

INT_KEYS = {"port", "idle_timeout", "depth", "dpi"}
PRESET_NAMES = ("Document", "Film", "Photo")
PRESET_FIELDS = ("mode", "depth", "dpi", "source")


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *path, key = dotted.split(".")
    for part in path:
        data = data.setdefault(part, {})
    data[key] = value


def updated_config_data(config: Any, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The config as TOML data with ``values`` ({"local.port": "104", ...}) applied; and typing problems."""
    data = tomllib.loads(to_toml(config))
    problems = []
    for dotted, value in values.items():
        key = dotted.rsplit(".", 1)[-1]
        if key in INT_KEYS and not isinstance(value, bool):
            try:
                value = int(str(value).strip())
            except ValueError:
                problems.append(f"{dotted}: {value!r} is not a whole number")
                continue
        _set(data, dotted, value)
    return data, problems


def save_config(config: Any, values: dict[str, Any]) -> Any:
    """Validate and write; returns the new Config or raises ConfigError listing every problem."""
    if config.path is None:
        raise KioskError(T["settings_no_file"])
    data, problems = updated_config_data(config, values)
    try:
        new = parse_config(data, Path(config.path))
    except ConfigError as error:
        problems += [p.removeprefix(f"{config.path}: ") for p in error.problems]
    if problems:
        raise ConfigError(problems)
    tmp = Path(f"{config.path}.tmp")
    tmp.write_text(to_toml(new), encoding="utf-8")
    os.replace(tmp, config.path)
    _audit_change(config, new)
    return new


def _audit_change(old: Any, new: Any) -> None:
    """A Security Alert (software configuration) naming the sections the save changed."""
    from kiosk.audit import events, trail
    from kiosk.audit.codes import SOFTWARE_CONFIGURATION, Outcome

    changed = [f.name for f in dataclasses.fields(new) if f.name != "path" and getattr(old, f.name) != getattr(new, f.name)]
    trail.configure(new)
    trail.record(events.security_alert(trail.application(), SOFTWARE_CONFIGURATION, Path(new.path).as_uri(),
                                       f"settings saved from the touch UI; changed: {', '.join(changed) or 'nothing'}",
                                       Outcome.SUCCESS, operator=trail.operator()))


def _preset_value(value: Any) -> str:
    """A preset value as typed in the form: 300.0 dpi shows as 300."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


class SettingsScreen(KioskScreen):
    """Edit and save the configuration."""

    status = StringProperty("")

    def on_enter(self) -> None:
        self.status = ""
        self.fields: dict[str, Any] = {}
        config = self.app.kiosk_config
        box = self.ids.form
        box.clear_widgets()
        self._section(T["station"], [("local.ae_title", T["local_ae"], config.local.ae_title),
                                     ("local.port", T["local_port"], config.local.port),
                                     ("local.station_name", T["station"], config.local.station_name),
                                     ("local.institution_name", T["institution"], config.local.institution_name)])
        problem = self.app.services.listener_problem if self.app.services else ""
        if problem:
            box.add_widget(Factory.SettingsHeader(text=T["listener_problem"].format(problem=problem)))
        for name, node in config.destinations.items():
            self._section(T["destination"].format(name=name), self._node_rows(f"destinations.{name}", node),
                          node=node, button=T["echo"])
        if config.worklist is not None:
            node = config.worklist
            self._section(T["worklist"], self._node_rows("worklist", node), node=node, button=T["test"])
        for name, settings in self._presets().items():
            self._section(T["preset_title"].format(name=name), [
                (f"presets.{name}.{key}", T[f"preset_{key}"], _preset_value(getattr(settings, key)))
                for key in PRESET_FIELDS])
        ui = self.app.ui
        self._section(T["settings"], [("ui.idle_timeout", T["idle_timeout"], ui.idle_timeout)])
        row = Factory.SettingsCheck()
        row.text, row.ids.check.active = T["kiosk_mode"], ui.kiosk_mode
        self.fields["ui.kiosk_mode"] = row
        box.add_widget(row)

    @staticmethod
    def _node_rows(prefix: str, node: Any) -> list[tuple[str, str, Any]]:
        if node.stow_url:  # a DICOMweb destination: no AE title, host or port of its own
            return [(f"{prefix}.stow_url", T["field_url"], node.stow_url)]
        return [(f"{prefix}.ae_title", T["field_ae"], node.ae_title), (f"{prefix}.host", T["field_host"], node.host),
                (f"{prefix}.port", T["field_port"], node.port)]

    def _presets(self) -> dict[str, Any]:
        """The scan presets in effect (built-in values with the [presets] overrides)."""
        try:
            from drivers.presets import presets
        except ImportError:
            return {}
        table = presets(self.app.kiosk_config.presets.tables())
        return {name: table[name] for name in PRESET_NAMES if name in table}

    def _section(self, title: str, rows: list[tuple[str, str, Any]], node: Any = None, button: str = "") -> None:
        box = self.ids.form
        header = Factory.SettingsHeader(text=title)
        box.add_widget(header)
        for dotted, label, value in rows:
            row = Factory.SettingsRow()
            row.label, row.ids.input.text = label, str(value)
            self.fields[dotted] = row
            box.add_widget(row)
        if node is not None:
            test = Factory.SettingsTest()
            test.button = button
            test.ids.go.bind(on_release=lambda _b: self.echo(node, test))
            box.add_widget(test)

    def echo(self, node: Any, row: Any) -> None:
        row.result = T["busy"]

        def done(seconds: float) -> None:
            row.result = T["echo_ok"].format(ms=round(seconds * 1000))

        def failed(error: KioskError) -> None:
            row.result = error.message

        self.app.run_async(lambda: self.app.services.echo(node), done, failed, session_bound=False)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dotted, row in self.fields.items():
            out[dotted] = row.active if dotted == "ui.kiosk_mode" else row.ids.input.text
        return out

    def save(self) -> None:
        try:
            new = save_config(self.app.kiosk_config, self.values())
        except ConfigError as error:
            self.status = T["settings_not_saved"].format(problems="\n".join(error.problems))
            return
        except KioskError as error:
            self.status = error.message
            return
        except OSError as error:
            self.status = T["settings_not_saved"].format(problems=f"{error.strerror}: {error.filename}")
            return
        self.app.apply_config(new)
        self.status = T["settings_saved"].format(path=new.path)


SCREEN = SettingsScreen
