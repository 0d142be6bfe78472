"""The fault campaign's shared inputs, built once per campaign with the tree under test (tests/faults/campaign.py
runs this with that tree first on PYTHONPATH and the repository second, for tests/fault_kit.py):

    python tests/faults/campaign_assets.py DEST

DEST/images (3 small PNGs), many (1,500 PNGs: runs long enough to kill or fill a disk), tiny (an honest tiny ONNX
pair), tinyprops (the same with its metadata_props), nan (an output that is NaN at every pixel), ids (a mask
model whose ids run past its labels), voc (a 64 px synthetic VOC set), ckpt.pt (an edgeseg checkpoint), tv.pth
(a bare torchvision state dict), state/ (a one-epoch training state, for --resume), huge.png (a header claiming
100,000 x 100,000 pixels), big_labels.txt (60 MB of label names)."""

from __future__ import annotations

import shutil
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from edgeseg.cli import main as edgeseg
from edgeseg.models.weights import save_checkpoint
from edgeseg.models.zoo import build_model
from edgeseg.scenes import SYNTHETIC_LABELS, SceneConfig, write_voc_dataset
from tests.fault_kit import tiny_onnx_bytes, write_tiny_pair
from tests.faults.test_faults_artifact_claims import plant

ARCH = "deeplabv3_mobilenet_v3_large"
SMALL_ARCH = "lraspp_mobilenet_v3_large"


def write_images(folder: Path, count: int, height: int, width: int, *, digits: int) -> None:
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:0{digits}d}.png"), np.full((height, width, 3), i * 40 % 250, np.uint8))


def huge_header_png() -> bytes:
    """An 8 x 8 PNG whose IHDR (CRC fixed) claims 100,000 x 100,000 pixels."""
    _, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def training_state(voc: Path, run: Path) -> None:
    """A one-epoch training state of lraspp at 64 px (the published checkpoint removed: only the state stays)."""
    run.mkdir()
    code = edgeseg(["train", "--data", str(voc), "--model", SMALL_ARCH, "--resolution", "64", "--batch-size", "2",
                    "--workers", "0", "--max-steps-per-epoch", "1", "--init", "scratch", "--no-bf16", "--epochs", "1",
                    "--out", str(run / "m.pt")])
    assert code == 0, f"train exited {code}"
    (run / "m.pt").unlink()


def build(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    write_images(dest / "images", 3, 48, 64, digits=2)
    write_images(dest / "many", 1500, 120, 160, digits=4)
    write_tiny_pair(dest / "tiny")
    plant(dest / "tinyprops", lambda manifest: None)
    write_tiny_pair(dest / "nan", model=tiny_onnx_bytes(bias0=np.nan))
    write_tiny_pair(dest / "ids", model=tiny_onnx_bytes(mask_offset=len(SYNTHETIC_LABELS)),
                    output={"kind": "mask", "layout": "NHW", "dtype": "int64"})
    voc = write_voc_dataset(dest / "voc", train=4, val=2, progress=False, config=SceneConfig(height=64, width=64))
    save_checkpoint(dest / "ckpt.pt", build_model(ARCH, num_classes=len(SYNTHETIC_LABELS)), arch=ARCH,
                    labels=SYNTHETIC_LABELS, resolution=64)
    torch.save(build_model(SMALL_ARCH, num_classes=3).state_dict(), dest / "tv.pth")
    training_state(voc, dest / "state")
    (dest / "huge.png").write_bytes(huge_header_png())
    (dest / "big_labels.txt").write_bytes(b"x\n" * (30 << 20))


if __name__ == "__main__":
    build(Path(sys.argv[1]))
    print("assets ready:", ", ".join(sorted(p.name for p in Path(sys.argv[1]).iterdir())))
