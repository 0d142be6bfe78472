"""The files a device needs for a row, copied only when missing there: each row's artifact and manifest, and
the labelled images the rows score (the first `--images` of the split, in the layout and order the bench
reads them here). The device's copies are checked by sha256 before and after each copy, so a copy cut off
by a lost connection is found and made again by the next run.

On the device, under the bench's folder (see `benchmarks.remote_ssh`):
  artifacts/<sha256 of the manifest, 16 hex>/<manifest> + <artifact> (+ files named after it, e.g. trtexec.sh)
  data/<sha256 of the file list, 16 hex>/<the set's folder name>/  VOC layout or images/ + masks/
"""

from __future__ import annotations

import hashlib
import json
import shlex
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgeseg.benchmarks.evalsets import EvalSet
from edgeseg.benchmarks.remote_preflight import DeviceInstall
from edgeseg.benchmarks.remote_ssh import DeviceError, SshDevice, last_line
from edgeseg.manifest import Manifest, cached_sha256

# Run by the device's python: which of the listed files are missing or differ (their folders are made).
CHECK_SCRIPT = r"""
import hashlib, json, os, sys
request = json.load(sys.stdin)
differ = []
for rel, want in request["files"].items():
    path = os.path.join(request["root"], rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        differ.append(rel)
        continue
    if digest.hexdigest() != want:
        differ.append(rel)
print(json.dumps(differ))
"""


@dataclass(frozen=True)
class Upload:
    """A local file and where it goes, relative to the bench's folder on the device (same file name)."""

    local: Path
    remote: str


@dataclass(frozen=True)
class RemoteSet:
    """An evaluation set as copied to the device: its folder (relative) and the split to read."""

    folder: str
    split: str


class DeviceFiles:
    """Keeps the device's copies of artifacts and evaluation sets up to date for one run."""

    def __init__(self, device: SshDevice, install: DeviceInstall) -> None:
        self.device = device
        self.install = install
        self.copied_files = 0
        self.copied_bytes = 0
        self._sets: dict[int, RemoteSet] = {}
        self._staging = tempfile.TemporaryDirectory(prefix="edgeseg-device-")

    def close(self) -> None:
        self._staging.cleanup()

    def remote_path(self, relative: str) -> str:
        return str(PurePosixPath(self.install.work) / relative)

    def artifact(self, manifest: Manifest) -> str:
        """The manifest's path on the device (relative to the bench's folder), its artifact beside it."""
        folder = f"artifacts/{cached_sha256(manifest.path)[:16]}"
        local = [manifest.path, *artifact_files(manifest)]
        uploads = [Upload(p, f"{folder}/{p.relative_to(manifest.path.parent).as_posix()}") for p in local]
        self.ensure(uploads)
        return f"{folder}/{manifest.path.name}"

    def evalset(self, evalset: EvalSet) -> RemoteSet:
        """The set's folder on the device, copied there (once per run) if anything is missing."""
        if id(evalset) not in self._sets:
            split = evalset.split or "val"
            uploads = evalset_uploads(evalset, split, Path(self._staging.name) / str(len(self._sets)))
            listing = "\n".join(f"{u.remote} {cached_sha256(u.local)}" for u in uploads)
            folder = f"data/{hashlib.sha256(listing.encode()).hexdigest()[:16]}/{evalset.root.name}"
            self.ensure([Upload(u.local, f"{folder}/{u.remote}") for u in uploads])
            self._sets[id(evalset)] = RemoteSet(folder, split)
        return self._sets[id(evalset)]

    def ensure(self, uploads: list[Upload]) -> None:
        """Copy what the device lacks (or holds with another sha256), then check that it arrived."""
        wanted = {u.remote: cached_sha256(u.local) for u in uploads}
        missing = self._differing(wanted)
        if not missing:
            return
        by_folder: dict[str, list[Path]] = defaultdict(list)
        for u in uploads:
            if u.remote in missing:
                by_folder[str(PurePosixPath(u.remote).parent)].append(u.local)
        for folder, files in by_folder.items():
            self.device.copy_to(files, self.remote_path(folder))
            self.copied_files += len(files)
            self.copied_bytes += sum(f.stat().st_size for f in files)
        still = self._differing({k: v for k, v in wanted.items() if k in missing})
        if still:
            raise DeviceError(f"{self.device.address.name}: {len(still)} copied file(s) differ there from here "
                              f"(first: {self.remote_path(still[0])}); is its disk full?")

    def _differing(self, wanted: dict[str, str]) -> list[str]:
        script = f"{shlex.quote(self.install.python)} -c {shlex.quote(CHECK_SCRIPT)}"
        done = self.device.run(script, stdin=json.dumps({"root": self.install.work, "files": wanted}))
        try:
            differ = json.loads(done.stdout) if done.returncode == 0 else None
        except json.JSONDecodeError:
            differ = None
        if not isinstance(differ, list):
            raise DeviceError(f"{self.device.address.name}: checking its copies in {self.install.work} failed "
                              f"({last_line(done.stderr) or f'exit status {done.returncode}'})")
        return differ


def artifact_files(manifest: Manifest) -> list[Path]:
    """The artifact, and the files beside it named after it (a TensorRT bundle's trtexec script)."""
    path = manifest.artifact_path
    if path.parent != manifest.path.parent:
        raise DeviceError(f"{manifest.path}: its artifact is not beside it ({path}); --device copies a manifest's "
                          "folder, so keep the artifact there")
    siblings = sorted(p for p in path.parent.glob(f"{path.stem}.*")
                      if p.is_file() and p != manifest.path and p != path and not p.name.startswith("."))
    return [path, *siblings]


def evalset_uploads(evalset: EvalSet, split: str, staging: Path) -> list[Upload]:
    """The set's scored samples in its own layout (so the device reads the same images in the same order
    under the same names), with a split list of exactly those ids and the set's labels.txt."""
    uploads = []
    voc = (evalset.root / "JPEGImages").is_dir()
    for image, mask in evalset.files:
        if voc:
            uploads += [Upload(image, f"JPEGImages/{image.name}"), Upload(mask, f"SegmentationClass/{mask.name}")]
        else:
            uploads += [Upload(image, f"images/{image.name}"), Upload(mask, f"masks/{mask.name}")]
    if voc:
        staging.mkdir(parents=True, exist_ok=True)
        listing = staging / f"{split}.txt"
        listing.write_text("".join(f"{i}\n" for i in evalset.ids))
        uploads.append(Upload(listing, f"ImageSets/Segmentation/{listing.name}"))
    labels = evalset.root / "labels.txt"
    if labels.is_file():
        uploads.append(Upload(labels, "labels.txt"))
    return uploads
