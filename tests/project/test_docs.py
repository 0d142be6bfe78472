"""The docs stay true: no machine-local paths, links and repository paths that resolve, the README's tables
against the CLI and setup.cfg, and docs/developing.md's newcomer table and "adding a backend" walkthrough
against the code (the walkthrough is executed: its blocks are written into a copy of the installed tree and
`edgeseg doctor`, `targets`, `convert --help` and `bench --help` must list the new format there).
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.constants import REPO
from tests.source_layout import installed_layout, package_dirs

DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
DEVELOPING = REPO / "docs" / "developing.md"

# A path that names one machine: a home, a scratch folder, a venv somewhere in particular, a pytest tmp dir.
# Relative paths (`.venv/bin/python`, `../shared/data`) and the placeholders `~/edgeseg`, `<clone>` are not.
_NOT_IN_A_PATH = r"(?<![\w.~/-])"
MACHINE_LOCAL = (
    (re.compile(_NOT_IN_A_PATH + r"/(?:work|root|tmp|var/tmp|private/var|scratch)/"), "a machine's own folder"),
    (re.compile(_NOT_IN_A_PATH + r"/(?:home|Users)/\w"), "a user's home"),
    (re.compile(r"pytest-of-"), "a pytest temporary folder"),
    (re.compile(r"(?:~|" + _NOT_IN_A_PATH + r"/)[^\s`'\"()]*/\.venv/"), "a virtual environment on one machine"),
    (re.compile(r"\b[A-Z]:\\\\?Users\\"), "a Windows home"),
)


def machine_local_paths(text: str) -> list[str]:
    """'line N: PATH (why)' for each machine-local path in a document's text."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, why in MACHINE_LOCAL:
            found += [f"line {number}: {m.group(0)} ({why})" for m in pattern.finditer(line)]
    return found


def scan_docs(paths) -> list[str]:
    return [f"{p.name}: {hit}" for p in paths for hit in machine_local_paths(p.read_text(encoding="utf-8"))]


def test_no_doc_names_a_machine_local_path():
    assert scan_docs(DOCS) == []


@pytest.mark.parametrize("planted", [
    "python        3.11.7 (/work/ci-fresh/.venv/bin/python3)",
    "edgeseg       0.1.0 at /root/edgeseg/edgeseg",
    "wrote /tmp/pytest-of-root/pytest-12/test_x0/out.mp4",
    "opencv (~/edgeseg/.venv/lib/python3.11/site-packages/cv2/__init__.py)",
    "cd /home/alice/edgeseg && make",
    "see /Users/bob/edgeseg/out",
])
def test_a_planted_machine_local_path_is_found(tmp_path, planted):
    doc = tmp_path / "planted.md"
    doc.write_text(f"# A doc\n\nSome text.\n\n```\n{planted}\n```\n")
    hits = scan_docs([doc])
    assert len(hits) >= 1 and hits[0].startswith("planted.md: line 6: "), hits


@pytest.mark.parametrize("allowed", [
    ".venv/bin/ruff check . && .venv/bin/python -m pytest",
    "sudo .venv/bin/python tests/arm64/run_checks.py",
    "~/edgeseg/bin/pip install -c ~/edgeseg/keep-numpy.txt",
    "python        3.11.7 (<clone>/.venv/bin/python3)",
    "OpenCV from /usr/lib/python3/dist-packages, cached in /var/cache/edgeseg",
    "--source v4l2:///dev/video0 --source ../shared/data/video/vtest.avi --out out/tmp/x",
])
def test_portable_paths_are_not_flagged(allowed):
    assert machine_local_paths(allowed) == []


# --------------------------------------------------------------------------- links and paths

def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings (lower case, punctuation dropped, spaces as hyphens)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    headings = re.findall(r"^#+\s+(.*)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(doc: Path) -> list[str]:
    """Each relative link or image of `doc` whose file or heading does not exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists():
            broken.append(f"{doc.name}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{doc.name}: {target} (no such heading)")
    return broken


def test_every_link_in_the_docs_resolves():
    assert [b for doc in DOCS for b in broken_links(doc)] == []


REPO_PATH = re.compile(r"(?<![\w./~<>-])(?:edgeseg|formats|targets|runtime|models|convert|benchmarks|tests|docs)"
                       r"/[\w./-]*\.(?:py|md|yaml|sh|json|npz|pt)\b")


def test_every_repository_file_the_docs_name_exists():
    new_in_the_walkthrough = {path for path, _ in walkthrough_blocks()}
    missing = [f"{doc.name}: {m.group(0)}" for doc in DOCS for m in REPO_PATH.finditer(doc.read_text(encoding="utf-8"))
               if not (REPO / m.group(0)).exists() and m.group(0) not in new_in_the_walkthrough]
    assert missing == []


# --------------------------------------------------------------------------- the README's tables

def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table under `heading` (header and rule left out)."""
    section = text.split(f"\n{heading}\n", 1)[1]
    rows = re.findall(r"^\|(.*)\|\s*$", section.split("\n#", 1)[0], re.M)
    cells = [[c.strip() for c in row.split("|")] for row in rows]
    return cells[2:]


def test_the_readme_commands_table_is_the_cli_in_its_order():
    from edgeseg import cli

    rows = table_rows((REPO / "README.md").read_text(encoding="utf-8"), "## Commands")
    named = [re.match(r"`edgeseg ([\w-]+)", row[0]).group(1) for row in rows]
    assert named == list(cli.COMMANDS), "README's commands table: one row per `edgeseg --help` command, same order"


def test_the_readme_install_table_names_every_extra():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    rows = table_rows((REPO / "README.md").read_text(encoding="utf-8"), "## Install profiles")
    named = {extra for row in rows for extra in re.findall(r"`edgeseg\[([\w-]+)\]`", row[0])}
    assert named == set(cfg["options.extras_require"])
    assert rows[0][0] == "`pip install edgeseg`", "the base install comes first"


# --------------------------------------------------------------------------- developing.md: the newcomer table

# The questions of issue 28 the table must answer (a word of each, found in its behaviour cell).
NEWCOMER_QUESTIONS = ("INT8 recipe for LiteRT", "CSI camera pipeline", "engine cache key", "palette", "p90",
                      "ImageNet normalization", "ASPP rewrite", "verified against PyTorch", "doctor's probes",
                      "training")


def newcomer_rows() -> list[tuple[str, str, str]]:
    rows = table_rows(DEVELOPING.read_text(encoding="utf-8"), "## Where things live: the newcomer test")
    return [(behaviour, path.strip("`"), symbol.strip("`")) for behaviour, path, symbol in rows]


def defined_names(path: Path) -> set[str]:
    """Top-level functions, classes and assignments of a module, and `Class.member` for their members."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names.update(f"{node.name}.{n.name}" for n in node.body
                             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_the_newcomer_table_answers_each_question():
    behaviours = " ".join(row[0] for row in newcomer_rows())
    assert [q for q in NEWCOMER_QUESTIONS if q not in behaviours] == []


@pytest.mark.parametrize(("behaviour", "path", "symbol"), newcomer_rows(), ids=lambda v: str(v)[:40])
def test_each_newcomer_row_names_a_file_that_defines_its_symbol(behaviour, path, symbol):
    assert (REPO / path).is_file(), f"{behaviour}: {path} does not exist"
    assert symbol in defined_names(REPO / path), f"{behaviour}: {path} defines no {symbol}"


def test_setup_cfg_lists_every_package_of_the_tree():
    """A wheel carries only the packages setup.cfg lists (the walkthrough's last step says so)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = set()
    for package, folder in package_dirs().items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *relative)))
    assert sorted(found - listed) == [], "packages missing from setup.cfg's `packages`"


# --------------------------------------------------------------------------- developing.md: adding a backend

def walkthrough_blocks() -> list[tuple[str, str]]:
    """(repository path, text) of each code block of "Adding a backend", named by its first line's comment."""
    text = DEVELOPING.read_text(encoding="utf-8")
    section = text.split("\n## Adding a backend", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for _indent, body in re.findall(r"^( *)```\w*\n(.*?)^\1```", section, re.M | re.S):
        body = textwrap.dedent(body)
        name = re.match(r"# ([\w./-]+)", body)
        if name:
            blocks.append((name.group(1).rstrip(":"), body))
    return blocks


def apply_walkthrough(dest: Path, *, skip: str | None = None) -> Path:
    """The installed layout under `dest` with the walkthrough's blocks written in (`skip`: leave one out)."""
    package_root = installed_layout(dest)
    folder_package = {folder: package for package, folder in package_dirs().items()}
    for path, body in walkthrough_blocks():
        if path == skip:
            continue
        folder, _, rest = path.partition("/")
        target = dest.joinpath(*folder_package[folder].split("."), rest)
        if path == "formats/__init__.py":  # one more line in PACKAGES
            lines = [line.strip() for line in body.splitlines()[1:] if line.strip()]
            assert len(lines) == 1, "the walkthrough adds one line to PACKAGES"
            text = target.read_text()
            start = text.index("PACKAGES = (\n")
            end = text.index("\n)", start) + 1
            target.write_text(f"{text[:end]}    {lines[0]}\n{text[end:]}")
        else:
            assert not target.exists(), f"{path}: the walkthrough writes new files only, and this one exists"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
    return package_root


def run_python(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python ARGS` with the copy at `root` first on the path (it shadows the editable install)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH")))),
           "COLUMNS": "250"}
    done = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def dummy_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("walkthrough")
    apply_walkthrough(root)
    return root


def test_the_walkthrough_is_one_package_one_packages_line_and_a_target_yaml():
    paths = [path for path, _ in walkthrough_blocks()]
    packages = {p.split("/")[1] for p in paths if p.startswith("formats/") and p != "formats/__init__.py"}
    assert len(packages) == 1, paths
    (name,) = packages
    assert "formats/__init__.py" in paths and f"formats/{name}/__init__.py" in paths
    others = [p for p in paths if not p.startswith(f"formats/{name}/") and p != "formats/__init__.py"]
    assert len(others) == 1 and re.fullmatch(r"targets/[\w-]+\.yaml", others[0]), others


def test_the_copy_shadows_the_editable_install(dummy_tree):
    code = ("import importlib.util, edgeseg\nfrom edgeseg.runtime.backend import backend_class\n"
            "print(edgeseg.__file__)\nprint(backend_class('dummy').__name__)\n"
            "print(importlib.util.find_spec('edgeseg.formats.dummy.convert.export').origin)")
    edgeseg_file, backend, exporter = run_python(dummy_tree, "-c", code).stdout.split()
    tree = dummy_tree.resolve()
    assert Path(edgeseg_file).resolve().is_relative_to(tree) and Path(exporter).resolve().is_relative_to(tree)
    assert backend == "DummyBackend"


def test_doctor_reports_the_new_format_and_its_target(dummy_tree):
    out = run_python(dummy_tree, "-m", "edgeseg", "doctor").stdout
    assert re.search(r"^dummy +1\.0; the skeleton format", out, re.M), out
    assert re.search(r"^  dummy-cpu +can convert; (can run \(the dummy engine\)|cannot run, because OpenCV)",
                     out, re.M), out


@pytest.mark.parametrize("argv", [["targets"], ["convert", "--help"], ["bench", "--help"]])
def test_the_new_target_is_listed(dummy_tree, argv):
    out = run_python(dummy_tree, "-m", "edgeseg", *argv).stdout
    assert "dummy-cpu" in re.sub(r"-\n\s+", "-", out), out


def test_without_its_packages_line_the_walkthrough_fails(tmp_path):
    """The check above would notice a walkthrough that stops working: the target names an unknown format."""
    root = tmp_path / "missing-line"
    apply_walkthrough(root, skip="formats/__init__.py")
    done = run_python(root, "-m", "edgeseg", "convert", "--help", check=False)
    assert done.returncode != 0 and "dummy-cpu" not in done.stdout
    assert "format dummy" in done.stderr, done.stderr
