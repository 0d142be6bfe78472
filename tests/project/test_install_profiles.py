"""Install profiles (setup.cfg): the base install is the device runtime, and modules import only that.

The dependency lists are read from setup.cfg and their markers evaluated for a Jetson (Linux
aarch64, JetPack 6's Python 3.10) and for a workstation; the imports are read from the source.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.constants import REPO

JETSON = {"platform_machine": "aarch64", "sys_platform": "linux", "python_version": "3.10", "extra": ""}
WORKSTATION = {"platform_machine": "x86_64", "sys_platform": "linux", "python_version": "3.11", "extra": ""}
WORKSTATION_STACK = {"torch", "torchvision", "onnx", "matplotlib", "pillow", "litert-torch", "ai-edge-quantizer"}
# The base install's import names (the distributions above: numpy, opencv-python, pyyaml, tqdm).
BASE_MODULES = {"numpy", "cv2", "yaml", "tqdm"}


def _options() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config


def _requirements(text: str) -> list[Requirement]:
    lines = [line.strip() for line in text.strip().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def _names(text: str, environment: dict[str, str]) -> set[str]:
    return {r.name.lower() for r in _requirements(text) if r.marker is None or r.marker.evaluate(environment)}


def test_the_base_install_on_a_jetson_is_numpy_pyyaml_tqdm_and_leaves_opencv_to_jetpack():
    assert _names(_options()["options"]["install_requires"], JETSON) == {"numpy", "pyyaml", "tqdm"}


def test_the_base_install_on_a_workstation_adds_pips_opencv_and_nothing_of_the_conversion_stack():
    base = _names(_options()["options"]["install_requires"], WORKSTATION)
    assert base == {"numpy", "opencv-python", "pyyaml", "tqdm"}


def test_device_extras_bring_no_workstation_package():
    extras = _options()["options.extras_require"]
    for extra in ("onnxruntime", "litert", "opencv", "jetson", "openvino"):
        assert not _names(extras[extra], JETSON) & WORKSTATION_STACK, extra
    # pip's tensorrt wheels are not JetPack's and would shadow it
    assert _names(extras["jetson"], JETSON) == {"pycuda"}


def test_the_conversion_stack_is_pinned_in_its_extra_and_all_brings_every_workstation_extra():
    extras = _options()["options.extras_require"]
    pins = {r.name.lower(): str(r.specifier) for r in _requirements(extras["convert"])}
    assert pins["torch"] == "==2.14.1" and pins["torchvision"] == "==0.29.1"
    assert {"onnx", "onnxruntime", "pillow"} <= set(pins)
    (everything,) = _requirements(extras["all"])
    assert everything.name == "edgeseg" and everything.extras == {"convert", "tflite", "bench", "dev", "onnxruntime",
                                                                  "litert", "openvino", "openvino-convert"}


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    """Top-level packages imported when the module is imported (not inside functions or TYPE_CHECKING)."""
    found = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, a.name.split(".")[0]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((node.lineno, node.module.split(".")[0]))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def _undeclared(files: list[Path], root: Path = REPO) -> list[str]:
    return [f"{path.relative_to(root)}:{line}: imports {module} at module level"
            for path in files for line, module in _module_level_imports(path)
            if module not in sys.stdlib_module_names and module not in BASE_MODULES and module != "edgeseg"]


def test_core_and_runtime_modules_import_only_the_base_install_at_module_level():
    files = [p for folder in ("edgeseg", "targets", "runtime") for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 20
    assert _undeclared(files) == []


@pytest.mark.parametrize(("planted", "module"), [
    ("import torch\n", "torch"),
    ("from PIL import Image\n", "PIL"),
    ("try:\n    import onnx\nexcept ImportError:\n    onnx = None\n", "onnx"),
])
def test_a_planted_module_level_import_is_reported_and_a_lazy_one_is_not(tmp_path, planted, module):
    (tmp_path / "runtime").mkdir()
    path = tmp_path / "runtime" / "planted.py"
    path.write_text(planted + "def lazy():\n    import matplotlib\n", encoding="utf-8")
    line = 2 if planted.startswith("try") else 1
    assert _undeclared([path], tmp_path) == [f"runtime/planted.py:{line}: imports {module} at module level"]


def test_a_missing_optional_package_names_its_extra_and_a_broken_one_its_error(tmp_path, monkeypatch):
    from edgeseg.errors import BackendUnavailableError, MissingPackageError
    from edgeseg.optional import require
    from edgeseg.runtime.backend import require as require_backend

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    with pytest.raises(BackendUnavailableError, match=r"^the ONNX Runtime backend needs 'onnxruntime', which is not "
                                                      r"installed here: pip install 'edgeseg\[onnxruntime\]'$"):
        require_backend("onnxruntime", "the ONNX Runtime backend")
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import libthatisnotthere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = (r"^plotting needs 'brokenpkg', which is installed but does not import "
              r"\(ModuleNotFoundError: No module named 'libthatisnotthere'\)$")
    with pytest.raises(MissingPackageError, match=broken):
        require("brokenpkg", extra="bench", purpose="plotting")


def test_a_command_that_needs_another_install_profile_says_which_extra(monkeypatch, capsys):
    from edgeseg import cli

    def needs_matplotlib(args):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda argv=None: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: argparse.Namespace(command="bench", run=needs_matplotlib))
    assert cli.main(["bench"]) == 2
    assert capsys.readouterr().err == ("edgeseg bench: error: this command needs 'matplotlib', which is not installed "
                                       "here: pip install 'edgeseg[bench]'\n")
