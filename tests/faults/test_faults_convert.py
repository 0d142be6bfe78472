"""Fault injection, issue 30 family 4 (class 3 of the first campaign, end to end):
`edgeseg convert` itself killed between the artifact and its
manifest becoming visible, then rerun as two conversions into the same folder at once.

The kill is `crash_point("publish:artifact-visible")` (os._exit at that moment, as SIGKILL would).
Each conversion is the smallest real one (sample model, 64 px, one verification image per set).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.atomic import CRASH_EXIT_CODE, STAGING_PREFIX
from edgeseg.cli import main
from edgeseg.manifest import load_manifest, sha256_file
from tests.constants import REPO


def convert(out: Path, crash_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EDGESEG_CRASH_AT", None)
    if crash_at:
        env["EDGESEG_CRASH_AT"] = crash_at
    args = [sys.executable, "-m", "edgeseg", "convert", "--resolution", "64", "--verify-images", "1",
            "--no-aspp-rewrite", "--out", str(out)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_convert_killed_before_its_manifest_then_two_reruns_at_once(tmp_path, capsys):
    out = tmp_path / "out"
    killed = convert(out, crash_at="publish:artifact-visible")
    assert killed.wait(timeout=900) == CRASH_EXIT_CODE, killed.stderr.read()[-2000:]
    visible = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert len(visible) == 1 and visible[0].endswith(".onnx")  # the artifact, without its manifest
    name = visible[0]
    assert any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir())  # what the kill left
    assert main(["info", str(out / name)]) == 2  # an artifact without its manifest is not used
    assert "has no manifest beside it" in capsys.readouterr().err

    reruns = [convert(out), convert(out)]
    for run in reruns:
        assert run.wait(timeout=900) == 0, run.stderr.read()[-2000:]
    manifest = load_manifest(out / name)  # checks the sha256
    assert manifest.data["artifact_sha256"] == sha256_file(out / name)
    assert manifest.data["verification"]["passed"] is True
    assert sorted(p.name for p in out.iterdir()) == [name, f"{name}.json"]  # no staging, no temporaries
