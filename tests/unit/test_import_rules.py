"""Imports run one way (DESIGN.md "Layout"), checked on the source: every ``headstart.*`` import
of every module, top-level or inside a function, against the rules below."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "headstart"
ENTRY_POINTS = {"headstart.train", "headstart.eval", "headstart.predict", "headstart.export"}
# tasks/ modules every task may use; a task never imports another task.
SHARED_TASK_MODULES = {"base", "optim", "encoder_text", "pretraining", "export"}
FORBIDDEN = {  # folder -> folders it must not import
    "ops": {"*"},
    "data": {"tasks", "backbones", "heads", "losses"},
    "tasks": {"data", "heads"},  # heads are wired by Hydra (_target_), data meets tasks only in train.py
    "backbones": {"tasks", "heads", "data"},
    "heads": {"tasks", "backbones", "data"},
    "losses": {"tasks", "data"},
    "metrics": {"tasks", "data"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name == "headstart" or name.startswith("headstart.")]


def violations(src: Path = SRC) -> list[str]:
    out = []
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).parts
        folder = parts[0] if len(parts) > 1 else None
        for line, name in imports_of(path):
            where = f"{path.relative_to(src.parent)}:{line} imports {name}"
            target = name.split(".")
            if name in ENTRY_POINTS or any(name.startswith(e + ".") for e in ENTRY_POINTS):
                out.append(f"{where} (an entry point)")
                continue
            if folder is None or len(target) < 2:
                continue
            forbidden = FORBIDDEN.get(folder, set())
            if target[1] != folder and ("*" in forbidden or target[1] in forbidden):
                out.append(f"{where} ({folder}/ must not import {target[1]}/)")
            elif folder == "tasks" and target[1] == "tasks" and len(target) > 2 and target[2] not in SHARED_TASK_MODULES:
                out.append(f"{where} (a task imports another task)")
    return out


def test_imports_run_one_way() -> None:
    assert violations() == []


def test_the_rule_check_finds_wrong_way_imports(tmp_path: Path) -> None:
    """The checker itself: a task importing data/ (inside a function) and another task, ops/ importing anything."""
    fake = tmp_path / "headstart"
    (fake / "tasks").mkdir(parents=True)
    (fake / "ops").mkdir()
    (fake / "tasks" / "a.py").write_text(
        "from headstart.tasks.base import Task\nfrom headstart.tasks.b import x\n"
        "def f():\n    from headstart.data.depth_io import y\n"
    )
    (fake / "ops" / "c.py").write_text("import headstart.data.errors\nfrom headstart.train import main\n")
    assert violations(fake) == [
        "headstart/ops/c.py:1 imports headstart.data.errors (ops/ must not import data/)",
        "headstart/ops/c.py:2 imports headstart.train (an entry point)",
        "headstart/tasks/a.py:2 imports headstart.tasks.b (a task imports another task)",
        "headstart/tasks/a.py:4 imports headstart.data.depth_io (tasks/ must not import data/)",
    ]
