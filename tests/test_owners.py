"""One owner for each idea: the store's array and attribute names live in ``sgc.cube.store`` and the label
classes in ``sgc.classes``; no other module defines them again, or reaches into a store with a literal."""

from __future__ import annotations

import ast
from pathlib import Path

from sgc.cube import store

PACKAGE = Path(__file__).resolve().parents[1] / "sgc"
STORE_NAMES = {
    value
    for name, value in vars(store).items()
    if name.isupper() and isinstance(value, str) and name != "FIELD"
}
# Store names that are also the plain names of other things (table columns, record keys, file stems) are
# left out of the checks; the rest must appear as literals in the store module alone.
GENERIC = {"field", "band", "source", "done", "fields", "bands", "settings", "objects", "classes", "catalogs"}
DISTINCTIVE = STORE_NAMES - GENERIC - {"layout", "sgc_version", "class", "checkpoint", "store"}


def _modules() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level ``NAME = literal`` assignments."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def test_store_names_are_defined_in_the_store_module_alone() -> None:
    assert {
        "image",
        "valid",
        "label",
        "exclude",
        "sgc_store",
        "held_out",
        "margin_arcsec",
        "prob",
    } <= DISTINCTIVE
    for module, tree in _modules().items():
        if module == "sgc/cube/store.py":
            continue
        clashes = {name: value for name, value in _constants(tree).items() if value in DISTINCTIVE}
        assert not clashes, f"{module} defines store names again: {clashes}"


def test_label_classes_are_defined_in_the_classes_module_alone() -> None:
    for module, tree in _modules().items():
        if module == "sgc/classes.py":
            continue
        named = {"SKY", "STAR", "GALAXY", "IGNORE", "IGNORE_INDEX", "CLASS_NAMES", "LABEL_VALUES"}
        clashes = {name: v for name, v in _constants(tree).items() if name in named}
        assert not clashes, f"{module} defines label classes again: {clashes}"
        tuples = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Tuple)
            and [getattr(e, "value", None) for e in node.elts] == ["sky", "star", "galaxy"]
        ]
        assert not tuples, f"{module} lists the class names again (line {tuples[0].lineno})"


def _literal_lookups(tree: ast.Module) -> list[tuple[int, str]]:
    """String literals used to index, test membership in, or ``get`` from something."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            # The stage table is keyed by stage names, some of which are also array names (label, exclude).
            if not (isinstance(node.value, ast.Name) and node.value.id == "STAGES"):
                found.append((node.lineno, node.slice.value))
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant):
            if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                found.append((node.lineno, node.left.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_module_reaches_into_a_store_with_a_literal_array_or_attribute_name() -> None:
    for module, tree in _modules().items():
        if module == "sgc/cube/store.py":
            continue
        lookups = [(line, name) for line, name in _literal_lookups(tree) if name in DISTINCTIVE]
        assert not lookups, f"{module} looks up store names by literal: {lookups}"
