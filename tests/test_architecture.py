"""The house: one folder per layer, imports pointing down only, no circles, no private name used outside its module.

Read from the source with ``ast`` (nothing is imported), every import counted, also those inside functions.
Each failure names the file, the line and the import.
"""
import ast
import importlib
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "tsamlib"

# floors, bottom up; a module may import its own folder, or a folder on a lower floor
FLOORS = [{"config", "_lazy"}, {"runs"}, {"model", "data"}, {"training", "evaluation"}, {"report"}, {"cli"},
          {"__main__"}]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
TOP_MODULES = {"__init__", "__main__", "config", "_lazy"}   # the only modules at tsamlib's top level


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def place(module: str) -> str:
    """The folder (layer) of ``tsamlib.x.y``, or the top-level module's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(module: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported tsamlib module, names taken from it) for every import in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "tsamlib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tsamlib":
                continue
            for a in node.names:   # `from tsamlib.data import index` takes the module tsamlib.data.index
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    out.append((node.lineno, sub, []))
                else:
                    out.append((node.lineno, target, [a.name]))
    return out


def test_top_level_holds_only_the_entry_points_and_config():
    assert {p.stem for p in PKG.glob("*.py")} == TOP_MODULES
    assert {place(m) for m in MODULES} <= set(FLOOR) | {"__init__"}


def test_imports_point_down_only():
    bad = []
    for module in MODULES:
        here = place(module)
        if here == "__init__":
            continue   # the top package: lazy names of every layer, no import of them
        for line, target, _ in imports(module):
            there = place(target)
            if there == here or there in ("config", "_lazy"):
                continue
            if there == "__init__" or FLOOR[there] >= FLOOR[here]:
                bad.append(f"{MODULES[module].relative_to(PKG.parent)}:{line} imports {target} "
                           f"({there} is not below {here})")
    assert not bad, "imports that do not point down:\n" + "\n".join(bad)


def test_no_private_name_leaves_its_module():
    bad = []
    for module in MODULES:
        for line, target, names in imports(module):
            bad += [f"{MODULES[module].relative_to(PKG.parent)}:{line} takes {n} from {target}" for n in names
                    if n.startswith("_") and not n.startswith("__") and target != module]
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   for a in node.names if node.level or (node.module or "").startswith("tsamlib")}
        bad += [f"{MODULES[module].relative_to(PKG.parent)}:{node.lineno} uses {node.value.id}.{node.attr}"
                for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


def test_no_import_circles():
    graph = {m: {t for _, t, _ in imports(m) if t in MODULES and t != m} for m in MODULES}
    graph.pop("tsamlib", None)   # the top package's names are lazy: it imports nothing of the layers
    for deps in graph.values():
        deps.discard("tsamlib")
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_the_checks_see_what_they_must_refuse(tmp_path, monkeypatch):
    """The checks above on a made-up house: an upward import, a private import and a circle are all reported."""
    pkg = tmp_path / "tsamlib"
    for f, text in {"__init__.py": "", "config.py": "", "runs/__init__.py": "", "data/__init__.py": "",
                    "runs/folder.py": "from ..data.video import load_clip\n",
                    "data/video.py": "from ..runs.folder import _lock\nfrom .probe import x\n",
                    "data/probe.py": "from .video import y\n"}.items():
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {module_name(p): p for p in sorted(pkg.rglob("*.py"))})
    with pytest.raises(AssertionError, match=r"runs/folder.py:1 imports tsamlib.data.video \(data is not below runs"):
        test_imports_point_down_only()
    with pytest.raises(AssertionError, match=r"data/video.py:1 takes _lock from tsamlib.runs.folder"):
        test_no_private_name_leaves_its_module()
    with pytest.raises(AssertionError, match=r"tsamlib.data.probe -> tsamlib.data.video -> tsamlib.data.probe"):
        test_no_import_circles()


@pytest.mark.parametrize("layer", sorted({place(m) for m in MODULES} - TOP_MODULES))
def test_each_layer_states_its_api_and_every_name_is_its_modules_public_name(layer):
    pkg = importlib.import_module(f"tsamlib.{layer}")
    assert pkg.__doc__ and pkg.__all__, f"tsamlib/{layer}/__init__.py states no API"
    for name in pkg.__all__:
        value = getattr(pkg, name)
        home = importlib.import_module(getattr(value, "__module__", "") or f"tsamlib.{layer}")
        if home.__name__.startswith(f"tsamlib.{layer}."):   # constants have no __module__: found by getattr
            assert name in home.__all__, f"tsamlib.{layer}.{name} is not in {home.__name__}.__all__"


COMMAND_LINE = {"cli", "__main__"}   # the only places that parse arguments


def command_line_outside_cli(module: str) -> list[str]:
    """Where ``module`` (outside cli/ and __main__) imports argparse or defines a ``cmd_`` function."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    where = MODULES[module].relative_to(PKG.parent)
    bad = [f"{where}:{node.lineno} imports argparse" for node in ast.walk(tree)
           if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names))
           or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse")]
    bad += [f"{where}:{node.lineno} defines {node.name}" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("cmd_")]
    return bad


def test_the_command_line_lives_in_cli():
    """A library function takes values and returns values: parsing arguments and running commands is cli's."""
    bad = [line for module in MODULES if place(module) not in COMMAND_LINE for line in command_line_outside_cli(module)]
    assert not bad, "command line outside tsamlib/cli and __main__:\n" + "\n".join(bad)


def test_the_command_line_check_sees_what_it_must_refuse(tmp_path, monkeypatch):
    pkg = tmp_path / "tsamlib"
    for f, text in {"__init__.py": "", "cli/__init__.py": "", "cli/x.py": "import argparse\ndef cmd_x(a): pass\n",
                    "data/__init__.py": "", "data/a.py": "import argparse\n",
                    "data/b.py": "def f():\n    from argparse import Namespace\n",
                    "data/c.py": "def cmd_c(args):\n    pass\n"}.items():
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {module_name(p): p for p in sorted(pkg.rglob("*.py"))})
    with pytest.raises(AssertionError) as e:
        test_the_command_line_lives_in_cli()
    said = str(e.value)
    for line in ("tsamlib/data/a.py:1 imports argparse", "tsamlib/data/b.py:2 imports argparse",
                 "tsamlib/data/c.py:1 defines cmd_c"):
        assert line in said
    assert "cli/x.py" not in said


def test_public_api_at_the_top():
    import tsamlib
    from tsamlib import RunConfig, create_tsam, evaluate, load_run, temporal_shift  # noqa: F401
    from tsamlib.model import create_tsam as from_the_layer
    assert create_tsam is from_the_layer and evaluate.__name__ == "evaluate_run"
    assert set(tsamlib.__all__) <= set(dir(tsamlib))
