"""Contract: the dock widgets do not import each other, directly or through other plugin
modules (what they share lives in the plugin's private helpers or in the core). The widget
modules are read from the manifest, so a new widget is held to it too. No Qt needed."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "napari_instseg"
PLUGIN = "napari_instseg.plugin"


def widget_modules() -> list[str]:
    manifest = yaml.safe_load((PACKAGE / "napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    return [commands[w["command"]].split(":")[0] for w in manifest["contributions"]["widgets"]]


def imported_modules(module: str) -> set[str]:
    """The modules of this package that ``module`` imports, anywhere in its code (lazy
    imports inside functions count too)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import segment_widget`` names a module, not an attribute
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("napari_instseg.")}


def plugin_imports(module: str) -> set[str]:
    """Every plugin module that ``module`` reaches through plugin modules."""
    seen, todo = set(), [module]
    while todo:
        for name in imported_modules(todo.pop()):
            path = PACKAGE.parent / (name.replace(".", "/") + ".py")
            if name.startswith(PLUGIN) and path.exists() and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_the_manifest_names_the_four_widgets():
    assert widget_modules() == [
        f"{PLUGIN}.segment_widget",
        f"{PLUGIN}.annotate_widget",
        f"{PLUGIN}.train_widget",
        f"{PLUGIN}.export_widget",
    ]


def test_widgets_do_not_import_each_other():
    widgets = widget_modules()
    for widget in widgets:
        others = plugin_imports(widget) & (set(widgets) - {widget})
        assert not others, f"{widget} imports {sorted(others)}"


def test_the_check_sees_an_import_through_a_helper(tmp_path, monkeypatch):
    """The checker follows relative imports through other plugin modules (a check that
    cannot see them could never fail)."""
    package = tmp_path / "napari_instseg"
    (package / "plugin").mkdir(parents=True)
    (package / "plugin" / "a_widget.py").write_text("from ._helper import thing\n")
    (package / "plugin" / "_helper.py").write_text(
        "def thing():\n    from .b_widget import B\n    return B\n"
    )
    (package / "plugin" / "b_widget.py").write_text("B = 1\n")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    assert plugin_imports(f"{PLUGIN}.a_widget") == {f"{PLUGIN}._helper", f"{PLUGIN}.b_widget"}
