"""The import rules of docs/architecture.md, read from the source with ``ast``.

- Only ``kiosk/ui/`` imports Kivy, and only the UI and the CLI import ``kiosk.ui``.
- ``drivers/`` imports nothing of DICOM networking, the outbox or the UI
  (``kiosk.net``, ``kiosk.outbox``, ``kiosk.ui``, pydicom, pynetdicom).
- No import cycle in ``kiosk/`` and ``drivers/``. Every import counts: one
  inside a function or under ``if TYPE_CHECKING`` hides a cycle, it does not
  remove it.

Each rule names the file and line of the import that breaks it. The last tests
run the rules on a small tree with deliberate offences, so each rule is known
to be able to fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGES = ("kiosk", "drivers")
KIVY_LAYER = "kiosk/ui/"
MAY_IMPORT_UI = ("kiosk/ui/", "kiosk/cli/")
DRIVERS_MUST_NOT_IMPORT = ("kiosk.net", "kiosk.outbox", "kiosk.ui", "pydicom", "pynetdicom")


@dataclass(frozen=True)
class Import:
    """One imported name as written in a file: ``from a.b import c`` gives ``a.b`` and ``a.b.c``."""

    file: str  # relative to the root, with forward slashes
    line: int
    names: tuple[str, ...]  # the module, and module.name for each name a from-import takes

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(root: Path, path: Path) -> list[Import]:
    """Every import in a file, at any depth, plus ``importlib.import_module("constant")``."""
    rel = path.relative_to(root).as_posix()
    package = _module_name(root, path) if path.name == "__init__.py" else _module_name(root, path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, (alias.name,)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(Import(rel, node.lineno, (module, *(f"{module}.{a.name}" for a in node.names))))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
            found.append(Import(rel, node.lineno, (node.args[0].value,)))
    return found


def _sources(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the checked packages."""
    return {_module_name(root, path): path
            for package in PACKAGES if (root / package).is_dir()
            for path in sorted((root / package).rglob("*.py"))}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def kivy_outside_the_ui(root: Path) -> list[str]:
    """Imports of Kivy outside kiosk/ui/, and of kiosk.ui outside the UI and the CLI."""
    offences = []
    for path in _sources(root).values():
        rel = path.relative_to(root).as_posix()
        for imp in _imports(root, path):
            if not rel.startswith(KIVY_LAYER) and any(_within(n, "kivy") for n in imp.names):
                offences.append(f"{imp.where()}: imports Kivy outside {KIVY_LAYER}")
            elif not rel.startswith(MAY_IMPORT_UI) and any(_within(n, "kiosk.ui") for n in imp.names):
                offences.append(f"{imp.where()}: imports kiosk.ui (Kivy) outside the UI and the CLI")
    return offences


def drivers_reaching_up(root: Path) -> list[str]:
    """Imports in drivers/ of networking, the outbox, the UI or the DICOM libraries."""
    offences = []
    for module, path in _sources(root).items():
        if not _within(module, "drivers"):
            continue
        for imp in _imports(root, path):
            bad = sorted({p for p in DRIVERS_MUST_NOT_IMPORT for n in imp.names if _within(n, p)})
            if bad:
                offences.append(f"{imp.where()}: drivers must not import {', '.join(bad)}")
    return offences


def import_cycles(root: Path) -> list[str]:
    """Each cycle among the checked modules, as ``a (file:line) -> b (file:line) -> a``."""
    sources = _sources(root)

    def resolve(name: str) -> str | None:  # the checked module a dotted name lives in
        while name and name not in sources:
            name = name.rpartition(".")[0]
        return name or None

    def targets(imp: Import) -> set[str | None]:
        if len(imp.names) == 1:  # import a.b
            return {resolve(imp.names[0])}
        module, *taken = imp.names  # from a import b: the submodule a.b if there is one, else a
        return {name if name in sources else resolve(module) for name in taken}

    edges: dict[str, dict[str, Import]] = {}
    for module, path in sources.items():
        out = edges.setdefault(module, {})
        for imp in _imports(root, path):
            for target in targets(imp) - {None, module}:
                out.setdefault(target, imp)
    cycles = []
    for component in _strongly_connected(edges):
        start = min(component)
        path = _path_back(edges, start, component)
        steps = [f"{a} ({edges[a][b].where()})" for a, b in zip(path, path[1:])]
        cycles.append(" -> ".join(steps + [start]))
    return cycles


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, {})))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _path_back(edges: dict[str, dict[str, Import]], start: str, component: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside a component (breadth first)."""
    came_from: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges[node]):
            if child not in component:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a cycle but none leads back to it")


def test_only_the_ui_imports_kivy():
    offences = kivy_outside_the_ui(ROOT)
    assert not offences, "\n".join(offences)


def test_drivers_import_nothing_of_networking_the_outbox_or_the_ui():
    offences = drivers_reaching_up(ROOT)
    assert not offences, "\n".join(offences)


def test_no_import_cycles():
    cycles = import_cycles(ROOT)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_rules_see_every_module():
    modules = _sources(ROOT)
    assert {"kiosk.ui.app", "kiosk.dicomize.builder", "drivers.registry", "kiosk.cli.demo"} <= set(modules)


# --------------------------------------------------------------------------- the rules can fail


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture()
def bad_tree(tmp_path: Path) -> Path:
    return _tree(tmp_path, {
        "kiosk/__init__.py": "",
        "kiosk/core.py": "import os\n\ndef show():\n    from kivy.app import App\n",
        "kiosk/outbox/__init__.py": "from kiosk.ui import strings\n",
        "kiosk/ui/__init__.py": "",
        "kiosk/ui/strings.py": "import kivy\n",
        "kiosk/cli/__init__.py": "def run():\n    from kiosk.ui.strings import T\n",
        "kiosk/net/__init__.py": "",
        "kiosk/net/store.py": "",
        "kiosk/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kiosk.b import B\n",
        "kiosk/b.py": "from kiosk import c\n",
        "kiosk/c.py": "def later():\n    import kiosk.a\n",
        "drivers/__init__.py": "",
        "drivers/good.py": "from kiosk.capture import Capture\nfrom kiosk import errors\n",
        "drivers/bad.py": "import os\nfrom kiosk.net.store import send\n\ndef ui():\n    from kiosk import ui\n"
                          "import importlib\nimportlib.import_module('pydicom')\n",
        "drivers/rel.py": "from .good import Capture\n",
    })


def test_the_kivy_rule_names_file_and_line(bad_tree):
    assert sorted(kivy_outside_the_ui(bad_tree)) == [
        "drivers/bad.py:5: imports kiosk.ui (Kivy) outside the UI and the CLI",
        "kiosk/core.py:4: imports Kivy outside kiosk/ui/",
        "kiosk/outbox/__init__.py:1: imports kiosk.ui (Kivy) outside the UI and the CLI",
    ]


def test_the_drivers_rule_names_file_and_line(bad_tree):
    assert sorted(drivers_reaching_up(bad_tree)) == [
        "drivers/bad.py:2: drivers must not import kiosk.net",
        "drivers/bad.py:5: drivers must not import kiosk.ui",
        "drivers/bad.py:7: drivers must not import pydicom",
    ]


def test_the_cycle_rule_counts_lazy_and_type_checking_imports(bad_tree):
    assert import_cycles(bad_tree) == [
        "kiosk.a (kiosk/a.py:3) -> kiosk.b (kiosk/b.py:1) -> kiosk.c (kiosk/c.py:2) -> kiosk.a"]
    (bad_tree / "kiosk/c.py").write_text("def later():\n    import os\n")
    assert import_cycles(bad_tree) == []
