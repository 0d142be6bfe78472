"""The layering rules of docs/developing.md, checked from the imports in the source tree.

core (edgeseg/*.py, targets/) <- runtime/ <- convert/ <- benchmarks/; arrows point down only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Source folder -> the layer its modules belong to (edgeseg.<name> for the installed package).
LAYER_OF_FOLDER = {"edgeseg": "core", "targets": "core", "runtime": "runtime", "models": "models", "convert": "convert",
                   "benchmarks": "benchmarks"}
LAYER_OF_PACKAGE = {"targets": "core", "runtime": "runtime", "models": "models", "convert": "convert",
                    "benchmarks": "benchmarks"}
# Which layers each layer may import.
ALLOWED = {
    "core": {"core"},
    "runtime": {"core", "runtime"},
    "models": {"core", "runtime", "models"},
    "convert": {"core", "runtime", "models", "convert"},
    "benchmarks": {"core", "runtime", "models", "convert", "benchmarks"},
}
# The command-line entry point composes every layer's subcommands; it is nobody's dependency.
ENTRY_POINTS = {Path("edgeseg/cli.py"), Path("edgeseg/__main__.py")}


def layer_of_module(module: str) -> str | None:
    """'edgeseg.formats.tensorrt.convert.qdq' -> 'convert'; 'edgeseg.manifest' -> 'core'; non-edgeseg -> None."""
    parts = module.split(".")
    if parts[0] != "edgeseg":
        return None
    if len(parts) > 1 and parts[1] in LAYER_OF_PACKAGE:
        return LAYER_OF_PACKAGE[parts[1]]
    return "core"


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every absolute module an import statement names, with its line (functions included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from edgeseg import scenes` names the submodule in the alias
            if node.module == "edgeseg":
                found.extend((node.lineno, f"edgeseg.{alias.name}") for alias in node.names)
    return found


def layer_violations(root: Path) -> list[str]:
    """One line per import that points up or sideways in the layering."""
    violations = []
    for folder, layer in LAYER_OF_FOLDER.items():
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root)
            if relative in ENTRY_POINTS:
                continue
            for line, module in imported_modules(path.read_text(encoding="utf-8")):
                target = layer_of_module(module)
                if target is not None and target not in ALLOWED[layer]:
                    violations.append(f"{relative}:{line}: {layer} imports {module} ({target})")
    return violations


def test_the_source_tree_keeps_its_layers():
    assert layer_violations(ROOT) == []


@pytest.mark.parametrize(
    ("folder", "planted"),
    [
        ("runtime", "from edgeseg.models.zoo import build_model\n"),
        ("models", "from edgeseg.convert.pipeline import convert\n"),
        ("convert", "import edgeseg.benchmarks.report\n"),
        ("edgeseg", "def late():\n    from edgeseg.runtime import preprocess\n"),
        ("edgeseg", "from edgeseg import benchmarks\n"),
    ],
)
def test_a_planted_upward_import_is_reported(tmp_path, folder, planted):
    for name in LAYER_OF_FOLDER:
        (tmp_path / name).mkdir()
    (tmp_path / folder / "planted.py").write_text(planted, encoding="utf-8")
    (violation,) = layer_violations(tmp_path)
    assert violation.startswith(f"{folder}/planted.py:")
