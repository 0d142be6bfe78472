"""Fault injection, issue 30 family 4 (class 3 of the first campaign):
publishing survives kill -9 at any moment and two writers at once.

A crash is simulated by `edgeseg.atomic.crash_point` (os._exit at a named moment, as SIGKILL would:
no cleanup runs), in a child process, so it is exact and does not depend on timing. The child publishes
the way `edgeseg convert` does: staged files in a staging folder, then `publish` (manifest last).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeseg.atomic import CRASH_EXIT_CODE, STAGING_PREFIX, atomic_path, folder_lock, staging_dir
from edgeseg.errors import ManifestError
from edgeseg.manifest import load_manifest, sha256_file
from tests.constants import REPO
from tests.fault_kit import tiny_onnx_bytes

# Stage the tiny model made with SEED and its manifest in OUT's staging folder, then publish them.
PUBLISH = """
import sys
from pathlib import Path
from edgeseg.atomic import publish, staging_dir
from tests.fault_kit import write_tiny_pair
out, seed, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(rounds):
    with staging_dir(out) as stage:
        manifest = write_tiny_pair(stage, seed=seed)
        print("staged", flush=True)
        publish([manifest.with_name("tiny.onnx"), manifest], out)
"""

# Write PATH through atomic_path, then crash (when asked) before the rename.
ATOMIC = """
import sys
from pathlib import Path
from edgeseg.atomic import atomic_path, crash_point
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"x" * 1000)
    crash_point("test:inside-atomic-path")
"""


def child(script: str, *args: str, crash_at: str | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EDGESEG_CRASH_AT", None)
    if crash_at:
        env["EDGESEG_CRASH_AT"] = crash_at
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env, cwd=REPO, text=True, **popen)


def run_child(script: str, *args, crash_at: str | None = None) -> int:
    proc = child(script, *args, crash_at=crash_at, stdout=subprocess.DEVNULL)
    return proc.wait(timeout=120)


def leftovers(folder: Path) -> list[str]:
    """Everything a finished writer must not leave: staging folders and hidden temporaries."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_pair_is(folder: Path, seed: int) -> None:
    manifest = load_manifest(folder / "tiny.onnx")  # checks the sha256 too
    assert (folder / "tiny.onnx").read_bytes() == tiny_onnx_bytes(seed)
    assert manifest.data["artifact_sha256"] == sha256_file(folder / "tiny.onnx")


@pytest.mark.parametrize("moment", ["publish:old-manifest-removed", "publish:artifact-visible"])
def test_kill_during_publish_never_leaves_a_usable_wrong_pair_and_a_rerun_cleans_up(tmp_path, moment):
    assert run_child(PUBLISH, tmp_path, 0, 1) == 0
    assert_pair_is(tmp_path, 0)
    assert run_child(PUBLISH, tmp_path, 1, 1, crash_at=moment) == CRASH_EXIT_CODE
    # The old manifest is gone before any new file is visible: the artifact on disk (old or new) has no
    # manifest, so nothing reads it, and no manifest describes bytes it did not hash.
    assert not (tmp_path / "tiny.onnx.json").exists()
    expected = tiny_onnx_bytes(0 if moment == "publish:old-manifest-removed" else 1)
    assert (tmp_path / "tiny.onnx").read_bytes() == expected
    with pytest.raises(ManifestError, match="tiny.onnx: has no manifest beside it"):
        load_manifest(tmp_path / "tiny.onnx")
    assert [n for n in leftovers(tmp_path) if n.startswith(STAGING_PREFIX)]  # the killed run's staging
    assert run_child(PUBLISH, tmp_path, 1, 1) == 0  # the rerun
    assert_pair_is(tmp_path, 1)
    assert leftovers(tmp_path) == []


def test_first_publish_killed_between_artifact_and_manifest_leaves_nothing_usable(tmp_path):
    assert run_child(PUBLISH, tmp_path, 0, 1, crash_at="publish:artifact-visible") == CRASH_EXIT_CODE
    with pytest.raises(ManifestError, match="has no manifest beside it"):
        load_manifest(tmp_path / "tiny.onnx")
    assert run_child(PUBLISH, tmp_path, 0, 1) == 0
    assert_pair_is(tmp_path, 0)
    assert leftovers(tmp_path) == []


def test_publish_waits_for_the_folder_lock(tmp_path):
    assert run_child(PUBLISH, tmp_path, 0, 1) == 0
    with folder_lock(tmp_path):
        proc = child(PUBLISH, tmp_path, 1, 1, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == "staged"
        time.sleep(0.5)  # a writer that ignored the lock would publish within this
        assert proc.poll() is None  # blocked on the lock
        assert_pair_is(tmp_path, 0)  # untouched while another holds the folder
    assert proc.wait(timeout=60) == 0
    assert_pair_is(tmp_path, 1)
    assert leftovers(tmp_path) == []


def test_two_writers_publishing_into_one_folder_at_once_end_with_one_true_pair(tmp_path):
    procs = [child(PUBLISH, tmp_path, seed, 15, stdout=subprocess.DEVNULL) for seed in (0, 1)]
    seen_wrong = 0
    while any(p.poll() is None for p in procs):
        try:
            m = load_manifest(tmp_path / "tiny.onnx")
        except ManifestError:
            continue  # absent or mid-publish: treated as absent, never used
        # A manifest that loaded names bytes that hash to its sha256, which is one of the two models.
        seen_wrong += m.data["artifact_sha256"] not in {sha(0), sha(1)}
    assert [p.wait() for p in procs] == [0, 0]
    assert seen_wrong == 0
    m = load_manifest(tmp_path / "tiny.onnx")
    assert (tmp_path / "tiny.onnx").read_bytes() in (tiny_onnx_bytes(0), tiny_onnx_bytes(1))
    assert m.data["artifact_sha256"] == sha256_file(tmp_path / "tiny.onnx")
    assert leftovers(tmp_path) == []


def sha(seed: int) -> str:
    import hashlib

    return hashlib.sha256(tiny_onnx_bytes(seed)).hexdigest()


def test_a_live_runs_staging_is_never_cleaned_by_another(tmp_path):
    with staging_dir(tmp_path) as mine:
        (mine / "big.onnx").write_bytes(b"x")
        assert run_child(PUBLISH, tmp_path, 0, 1) == 0  # another run starts, cleans stale staging, publishes
        assert (mine / "big.onnx").is_file()
    assert leftovers(tmp_path) == []


def test_killed_atomic_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "state.pt"
    keep = tmp_path / ".state.pt.backup"  # a user's own hidden file of a similar name is not ours
    keep.write_text("mine")
    assert run_child(ATOMIC, target, crash_at="test:inside-atomic-path") == CRASH_EXIT_CODE
    assert not target.exists()
    assert len(leftovers(tmp_path)) == 2  # the killed writer's temporary, and the user's file
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"y")
    assert target.read_bytes() == b"y"
    assert leftovers(tmp_path) == [keep.name]


def test_legacy_unlocked_staging_is_removed_once_old(tmp_path):
    # Staging of an older edgeseg (no owner lock): removed when older than a minute, kept while young.
    old, young = tmp_path / f"{STAGING_PREFIX}old", tmp_path / f"{STAGING_PREFIX}young"
    for folder in (old, young):
        folder.mkdir()
        (folder / "half.onnx").write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    with staging_dir(tmp_path):
        pass
    assert leftovers(tmp_path) == [young.name]


def test_a_killed_runs_half_published_artifact_is_recognised_as_its_leftover(tmp_path):
    from edgeseg.atomic import interrupted_publish

    assert run_child(PUBLISH, tmp_path, 0, 1, crash_at="publish:artifact-visible") == CRASH_EXIT_CODE
    assert interrupted_publish(tmp_path / "tiny.onnx")  # its dead run's staging still holds the manifest
    assert not interrupted_publish(tmp_path / "other.onnx")
    assert run_child(PUBLISH, tmp_path, 0, 1) == 0
    assert not interrupted_publish(tmp_path / "tiny.onnx")  # published, and the staging cleaned
    with staging_dir(tmp_path) as live:  # a live run's staging is not a leftover
        (live / "tiny.onnx.json").write_text("{}")
        assert not interrupted_publish(tmp_path / "tiny.onnx")
