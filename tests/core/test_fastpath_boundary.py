"""pynetdicom's private names and internal modules are used in kiosk/net/fastpath/ only (issue 13 items 5, 7).

With ``[network] fast_path = false`` the kiosk must run on stock pynetdicom;
that holds only while no other module reaches into pynetdicom. The source is
read with ``ast``: imports of pynetdicom's internal modules (or of names
starting with ``_``), attributes pynetdicom defines with a leading ``_``
(unless the same file defines that name for a class of its own), private
methods overridden in a subclass of a pynetdicom class, and private names
given to getattr/setattr/hasattr as strings.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pynetdicom

from tests.support.paths import ROOT

KIOSK = ROOT / "kiosk"
# pynetdicom's own plumbing: what its documented API (AE, Association, events, presentation
# contexts, SOP classes, statuses, primitives) is built on.
INTERNAL_MODULES = {"acse", "dimse", "dimse_messages", "dsutils", "dul", "fsm", "pdu", "pdu_items", "timer",
                    "transport", "utils"}
REFLECTION = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@functools.cache
def pynetdicom_private_names() -> frozenset[str]:
    """Every ``_name`` pynetdicom defines or uses as an attribute (its tests and apps aside)."""
    root = Path(pynetdicom.__file__).parent
    names: set[str] = set()
    for path in root.rglob("*.py"):
        if {"tests", "apps", "benchmarks"} & set(path.relative_to(root).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                names.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
                names.add(node.name)
    return frozenset(names)


def _internal_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "pynetdicom" and len(parts) > 1 and (_private(parts[1]) or parts[1] in INTERNAL_MODULES)


def _pynetdicom_bindings(tree: ast.AST) -> set[str]:
    """Local names bound to pynetdicom modules or objects by imports."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pynetdicom":
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names
                         if alias.name.split(".")[0] == "pynetdicom")
    return bound


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def violations_in(source: str, where: str) -> list[str]:
    """Uses of pynetdicom's private names or internal modules in one file's ``source``."""
    tree = ast.parse(source)
    private = pynetdicom_private_names()
    from_pynetdicom = _pynetdicom_bindings(tree)
    derived = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
               and any(_root_name(base) in from_pynetdicom for base in node.bases)]
    inside_derived = {id(child) for cls in derived for child in ast.walk(cls)}
    # The file's own private names (defined outside classes derived from pynetdicom's).
    own = set()
    for node in ast.walk(tree):
        if id(node) in inside_derived:
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            own.add(node.attr)
    found = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if _internal_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pynetdicom":
            if _internal_module(node.module):
                found.append(f"{line}: from {node.module} import ...")
            elif node.module == "pynetdicom":
                found += [f"{line}: from pynetdicom import {a.name}" for a in node.names
                          if _private(a.name) or a.name in INTERNAL_MODULES]
        elif isinstance(node, ast.Attribute) and node.attr in private and node.attr not in own:
            found.append(f"{line}: .{node.attr}")
        elif (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and id(node) in inside_derived
              and node.name in private):
            found.append(f"{line}: overrides pynetdicom's {node.name}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in REFLECTION
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in private and node.args[1].value not in own):
            found.append(f"{line}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def violations(root: Path) -> list[str]:
    """Every use of pynetdicom's private names or internal modules under ``root`` outside ``net/fastpath``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if (root / "net" / "fastpath") in path.parents:
            continue
        found += violations_in(path.read_text(encoding="utf-8"), str(path.relative_to(root.parent)))
    return found


def test_pynetdicom_internals_are_used_only_in_the_fast_path_package():
    found = violations(KIOSK)
    assert not found, ("pynetdicom private names or internal modules used outside kiosk/net/fastpath/ "
                       "(move that code into the fast path, with a stock alternative for fast_path = false):\n  "
                       + "\n  ".join(found))


def test_each_kind_of_use_is_found_and_own_private_names_are_not():
    source = '''
import pynetdicom.fsm
from pynetdicom import AE, _config
from pynetdicom.transport import AssociationSocket


class TunedAE(AE):
    def _create_socket(self, assoc, address, tls_args):
        return super()._create_socket(assoc, address, tls_args)


class Mine:
    def __init__(self):
        self._servers = []

    def _report(self):
        return self._servers


def pause(assoc, ae):
    ae._require_calling_aet = []
    assoc._reactor_checkpoint.clear()
    return getattr(assoc.dul, "_kill_thread")
'''
    found = [v.split(": ", 1)[1] for v in violations_in(source, "example.py")]
    assert sorted(found) == sorted([
        "import pynetdicom.fsm", "from pynetdicom import _config", "from pynetdicom.transport import ...",
        "overrides pynetdicom's _create_socket", "._create_socket", "._require_calling_aet", "._reactor_checkpoint",
        "getattr(..., '_kill_thread')"])
