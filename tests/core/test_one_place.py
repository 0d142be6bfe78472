"""Each rule is written once: a format's suffix (and a manifest's), a required package's name and install
wording, the normalization, the ignore index, the image suffixes, the VOC labels and palette, convert's defaults.

The source tree (the folders setup.cfg installs) is read, never imported, and every re-typed copy is
reported with its file and line; docstrings and comments may mention the rules. Tests are not scanned:
they state reference values on purpose. The planted copies below show that each check fires.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeseg.formats import all_formats
from edgeseg.optional import optional_packages
from tests.constants import REPO

SOURCE_FOLDERS = ("edgeseg", "formats", "runtime", "convert", "models", "benchmarks", "targets")

CONVENTIONS = "edgeseg/conventions.py"
PALETTE = "edgeseg/palette.py"
OPTIONS = "convert/options.py"
OPTIONAL = "edgeseg/optional.py"
PACKAGES = "edgeseg/packages.py"
MANIFEST = "edgeseg/manifest.py"
ERRORS = "edgeseg/errors.py"
# An exception's text cut by hand: str(exc).strip(), str(error).splitlines(), ...
EXCEPTION_TEXT = re.compile(r"str\((exc|error|failure|err|e)\)\.(strip|splitlines|split)\(")

NORMALIZATION = {0.485, 0.456, 0.406, 0.229, 0.224, 0.225}
IGNORE_INDEX = 255
# Module-level names that hold one rule each, and the one module allowed to assign them.
RULE_NAMES = {
    "IMAGENET_MEAN": CONVENTIONS, "IMAGENET_STD": CONVENTIONS, "IGNORE_INDEX": CONVENTIONS,
    "IMAGE_SUFFIXES": CONVENTIONS, "VIDEO_SUFFIXES": CONVENTIONS, "OUTPUT_KINDS": CONVENTIONS,
    "DEFAULT_ARCH": CONVENTIONS, "SAMPLE_NAME": CONVENTIONS, "RUNTIME_MIN_PYTHON": CONVENTIONS,
    "VOC_LABELS": PALETTE, "SHARED_PACKAGES": PACKAGES, "MANIFEST_SUFFIX": MANIFEST,
    "CALIBRATION_METHODS": OPTIONS, "DEFAULT_CALIBRATION_METHOD": OPTIONS, "DEFAULT_PERCENTILE": OPTIONS,
    "DEFAULT_CALIBRATION_IMAGES": OPTIONS,  # (the bench's DEFAULT_VERIFY_IMAGES, 16, is a default of its own)
}
# String values written once, where the rule lives.
RULE_STRINGS = {"deeplabv3_mobilenet_v3_large_synthetic.pt": CONVENTIONS, "aeroplane": PALETTE,
                "tvmonitor": PALETTE}
RULE_FLOATS = {99.99: OPTIONS, **{v: CONVENTIONS for v in NORMALIZATION}}
# A literal collection holding at least this many members of one of these lists is a copy of the list.
COPY_MIN = 3
# Strings that end like a suffix but name no file: ONNX's default operator domain.
NOT_FILE_NAMES = {"ai.onnx"}
INSTALL_WORDINGS = {"pip install": re.compile(r"\bpip install\b"), "edgeseg[": re.compile(r"edgeseg\[")}
# Copies in modules another change is rewriting (the Segmenter's); each entry must still be found, so the
# list can only shrink: remove an entry when its module reads edgeseg.conventions.
KNOWN_COPIES: set[str] = set()


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def source_tree(root: Path = REPO) -> dict[str, str]:
    """Relative path -> text of every Python module edgeseg installs."""
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8")
            for folder in SOURCE_FOLDERS for p in sorted((root / folder).rglob("*.py"))}


def _is_registry(path: str) -> bool:
    """The modules that register packages: edgeseg/packages.py and each format's entry."""
    return path == PACKAGES or path.startswith("formats/") and path.count("/") == 2 and path.endswith("/__init__.py")


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the Constant nodes that are docstrings (prose may name any rule)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of every string constant outside docstrings, f-string pieces included."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def _format_suffixes() -> dict[str, str]:
    """Suffix -> the registry module that may write it, for every format a target converts to (the PyTorch
    reference's `.pt` is a checkpoint's name, not an artifact's)."""
    owners: dict[str, str] = {}
    for fmt in all_formats().values():
        if fmt.exporter is None:
            continue
        module = f"formats/{fmt.runner.split('.')[2]}/__init__.py"
        for suffix in (fmt.suffix, fmt.weights_suffix):
            if suffix:
                owners.setdefault(suffix, module)  # the TensorRT bundle's .onnx is ONNX's (read from there)
    return owners


def _renamed_distributions() -> set[str]:
    """Pip names that differ from the import name: written anywhere, they are a package's name, not an import."""
    return {dist for module, (dist, _) in optional_packages().items() if dist != module}


def _is_json_suffix(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == ".json"


def _names_a_manifest(node: ast.AST) -> bool:
    """`name + ".json"` or f"{name}.json": a file's name with the manifest suffix after it."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_json_suffix(node.right)
    return isinstance(node, ast.JoinedStr) and len(node.values) == 2 and isinstance(
        node.values[0], ast.FormattedValue) and _is_json_suffix(node.values[1])


def _copies(node: ast.AST, members: set) -> bool:
    if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return False
    values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
    return len(values & members) >= COPY_MIN


def _structure_findings(path: str, tree: ast.Module) -> Iterator[Finding]:
    """Assignments of rule names, numbers, collections and Package records written outside their module."""
    from edgeseg.conventions import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    from edgeseg.convert.options import CALIBRATION_METHODS
    from edgeseg.palette import VOC_LABELS

    lists = {"the image suffixes": (set(IMAGE_SUFFIXES), CONVENTIONS),
             "the video suffixes": (set(VIDEO_SUFFIXES), CONVENTIONS),
             "the VOC labels": (set(VOC_LABELS), PALETTE),
             "the calibration methods": (set(CALIBRATION_METHODS), OPTIONS)}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            owner = RULE_NAMES.get(getattr(target, "id", ""))
            if owner is not None and owner != path:
                yield Finding(path, node.lineno, f"{target.id} is {owner}'s")  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        number = node.value if isinstance(node, ast.Constant) and isinstance(node.value, float) else None
        if number is not None and RULE_FLOATS.get(number, path) != path:
            yield Finding(path, node.lineno, f"{number} is {RULE_FLOATS[number]}'s")
        for name, (members, owner) in lists.items():
            if owner != path and _copies(node, members):
                yield Finding(path, node.lineno, f"a copy of {name} ({owner})")
        if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value == IGNORE_INDEX
                                                 for c in (node.left, *node.comparators)):
            yield Finding(path, node.lineno, f"{IGNORE_INDEX} compared: the ignore index is {CONVENTIONS}'s")
        if path != MANIFEST and _names_a_manifest(node):
            yield Finding(path, node.lineno, f"a manifest's name is {MANIFEST}'s (manifest_path_for)")
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Package" and not _is_registry(path):
            yield Finding(path, node.lineno, "a Package record outside the registry")


def _string_findings(path: str, tree: ast.Module) -> Iterator[Finding]:
    """Suffixes, install wordings, package names and rule strings written outside their module."""
    suffixes = _format_suffixes()
    renamed = _renamed_distributions()
    for line, text in _strings(tree):
        file_name = text not in NOT_FILE_NAMES and not text.startswith("edgeseg.")  # not a module's dotted name
        for suffix, owner in suffixes.items():
            if file_name and text.endswith(suffix) and path != owner:
                yield Finding(path, line, f"the {suffix} suffix is the registry's ({owner})")
        for wording, pattern in INSTALL_WORDINGS.items():
            if pattern.search(text) and path != OPTIONAL:
                yield Finding(path, line, f"'{wording}' is worded by {OPTIONAL} (install_hint, pip_install)")
        for dist in renamed:  # quoted, as "needs 'PACKAGE'" names what to install
            if f"'{dist}'" in text and not _is_registry(path):
                yield Finding(path, line, f"the package name '{dist}' is the registry's")
        owner = RULE_STRINGS.get(text)
        if owner is not None and owner != path:
            yield Finding(path, line, f"{text!r} is {owner}'s")


def _code_findings(path: str, source: str) -> Iterator[Finding]:
    """Rules only code spells: the VOC colour map's bit interleave (bit k of a class id's thirds -> bit 7 - k
    of each channel), and taking an exception's message apart line by line (errors.first_line does)."""
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if path != PALETTE and "& 1) <<" in code and ">>" in code:
            yield Finding(path, number, f"the VOC palette is {PALETTE}'s")
        if path != ERRORS and EXCEPTION_TEXT.search(code):
            yield Finding(path, number, f"an exception's first line is {ERRORS}'s (first_line)")


def findings(tree: dict[str, str]) -> list[Finding]:
    """Every rule written outside its one place, in `tree` (relative path -> source)."""
    found: list[Finding] = []
    seen_packages: dict[str, str] = {}
    for path, source in sorted(tree.items()):
        module = ast.parse(source, filename=path)
        found += [*_structure_findings(path, module), *_string_findings(path, module),
                  *_code_findings(path, source)]
        for node in ast.walk(module):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Package" and len(node.args) >= 2:
                dist = getattr(node.args[1], "value", None)
                if isinstance(dist, str) and seen_packages.setdefault(dist, path) != path:
                    found.append(Finding(path, node.lineno, f"Package {dist!r} is written in {seen_packages[dist]}"))
    return found


def _unknown(found: list[Finding]) -> list[str]:
    return [str(f) for f in found if f"{f.path}: {f.rule}" not in KNOWN_COPIES]


def test_every_rule_is_written_once():
    assert _unknown(findings(source_tree())) == []


def test_the_known_copies_are_still_there():
    """A fixed copy must leave KNOWN_COPIES too, or the list would hide a new one in the same place."""
    still = {f"{f.path}: {f.rule}" for f in findings(source_tree())}
    assert KNOWN_COPIES - still == set()


def test_the_scan_reads_the_installed_folders():
    tree = source_tree()
    assert {CONVENTIONS, PALETTE, OPTIONS, OPTIONAL, PACKAGES, "formats/onnx/__init__.py"} <= set(tree)
    assert all(path.split("/")[0] in SOURCE_FOLDERS for path in tree)


PLANTS = {
    "normalization": ("MEAN = (0.485, 0.456, 0.406)\n", "0.485 is edgeseg/conventions.py's"),
    "std as a list": ("std = [0.229, 0.224, 0.225]\n", "0.229 is edgeseg/conventions.py's"),
    "ignore index": ("def f(ids):\n    return ids[ids != 255]\n", "255 compared"),
    "ignore index by name": ("IGNORE_INDEX = 254 + 1\n", "IGNORE_INDEX is edgeseg/conventions.py's"),
    "image suffixes": ("SUFFIXES = ('.jpg', '.png', '.bmp')\n", "a copy of the image suffixes"),
    "artifact suffix": ("def f(staging, name):\n    return staging / f'{name}.tflite'\n",
                        "the .tflite suffix is the registry's"),
    "suffix compared": ("def f(p):\n    return p.suffix == '.xml'\n", "the .xml suffix is the registry's"),
    "intermediate file": ("NAME = 'model.traced.onnx'\n", "the .onnx suffix is the registry's"),
    "IR weights": ("def f(xml):\n    return xml.with_suffix('.bin')\n", "the .bin suffix is the registry's"),
    "VOC labels": ("LABELS = ('background', 'aeroplane', 'bicycle', 'bird')\n", "a copy of the VOC labels"),
    "VOC palette": ("def f(c, shift):\n    return ((c >> 0) & 1) << shift\n", "the VOC palette is"),
    "install hint": ("MESSAGE = 'needs onnxruntime (pip install onnxruntime)'\n", "'pip install' is worded by"),
    "extra": ("def f(x):\n    return f'{x} is not installed (edgeseg[convert])'\n", "'edgeseg[' is worded by"),
    "package record": ("from edgeseg.formats import Package\nTORCH = Package('torch', 'torch', 'convert')\n",
                       "a Package record outside the registry"),
    "package name": ("MESSAGE = \"the LiteRT backend needs 'ai-edge-litert'\"\n",
                     "the package name 'ai-edge-litert' is the registry's"),
    "percentile": ("def f(p=99.99):\n    return p\n", "99.99 is convert/options.py's"),
    "calibration methods": ("METHODS = ('minmax-mean', 'minmax', 'entropy', 'percentile')\n",
                            "a copy of the calibration methods"),
    "default method": ("DEFAULT_CALIBRATION_METHOD = 'minmax'\n", "DEFAULT_CALIBRATION_METHOD is convert/options.py's"),
    "sample checkpoint": ("NAME = 'deeplabv3_mobilenet_v3_large_synthetic.pt'\n", "is edgeseg/conventions.py's"),
    "default architecture": ("DEFAULT_ARCH = 'deeplabv3_resnet50'\n", "DEFAULT_ARCH is edgeseg/conventions.py's"),
    "manifest suffix": ("def f(artifact):\n    return artifact.with_name(artifact.name + '.json')\n",
                        "a manifest's name is edgeseg/manifest.py's"),
    "first line": ("def f(exc):\n    return str(exc).strip().splitlines()[0]\n", "an exception's first line is"),
    "manifest name": ("def f(onnx_name):\n    return f'{onnx_name}.json'\n", "a manifest's name is"),
}


@pytest.mark.parametrize("name", PLANTS)
def test_a_planted_copy_is_found_where_it_was_planted(name):
    code, rule = PLANTS[name]
    tree = {**source_tree(), "runtime/planted.py": code}
    planted = [str(f) for f in findings(tree) if f.path == "runtime/planted.py"]
    assert any(rule in line for line in planted), planted
    assert _unknown([f for f in findings(tree) if f.path != "runtime/planted.py"]) == []


def test_a_package_registered_twice_is_found_in_the_registry_too():
    tree = source_tree()
    twice = tree["formats/pytorch/__init__.py"] + "\nOTHER = Package('torch', 'torch', 'convert')\n"
    found = _unknown(findings({**tree, "formats/pytorch/__init__.py": twice}))
    assert found == [f"formats/pytorch/__init__.py:{twice.count(chr(10))}: Package 'torch' is written in "
                     f"{PACKAGES}"]


def test_docstrings_and_comments_may_name_the_rules():
    code = ('"""Writes `.tflite` files; pip install \'edgeseg[tflite]\' brings the converter."""\n'
            "# ImageNet's mean (0.485, 0.456, 0.406) and .onnx suffixes are the registry's\n"
            "X = 1\n")
    assert _unknown(findings({**source_tree(), "runtime/planted.py": code})) == []
