"""The dependency rule of DESIGN.md, checked on the source: no package imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "pipeline", "model", "flows")

# Which of our packages (or modules) each package may import.
ALLOWED: dict[str, tuple[str, ...]] = {
    "storage": ("storage",),
    "model": ("model", "storage"),
    # model.smpl on purpose (DESIGN.md had only model.backbone): readers and sample writers pose
    # ground-truth SMPL bodies as the model does, and two SMPL implementations would drift.
    "pipeline": ("pipeline", "storage", "model.backbone", "model.smpl"),
    "flows": ("flows", "pipeline", "model", "storage"),
}


def imports_of(path: Path) -> list[tuple[str, ...]]:
    """Each import of one of our packages, as the names it may stand for.

    `from model import backbone` may name the package `model` or the module
    `model.backbone`; it is allowed when either is.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, ...]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name,) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((f"{node.module}.{alias.name}", node.module) for alias in node.names)
    return [names for names in found if names[0].split(".")[0] in PACKAGES]


def allowed(names: tuple[str, ...], rules: tuple[str, ...]) -> bool:
    return any(n == rule or n.startswith(rule + ".") for n in names for rule in rules)


def violations(path: Path, package: str) -> list[str]:
    return [names[-1] for names in imports_of(path) if not allowed(names, ALLOWED[package])]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_follow_the_dependency_rule(package: str) -> None:
    found = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in violations(path, package)
    ]
    assert not found, "\n".join(found)


def test_the_rule_catches_upward_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from flows.cli import app\nimport model.tcmr\nfrom model import backbone\n"
        "from model.smpl import SMPL\nimport storage.layout\n"
    )
    assert violations(bad, "storage") == ["flows.cli", "model.tcmr", "model", "model.smpl"]
    assert violations(bad, "pipeline") == ["flows.cli", "model.tcmr"]  # model.smpl allowed
