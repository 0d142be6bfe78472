"""Fault injection, issue 30 family 2 (class 1 of the first campaign):
verification and weight loading cannot be fooled by NaN or Inf.

NaN is ignored by `max` and argmaxes to class 0 on both sides, so a model that outputs NaN everywhere
used to verify with agreement 1.0 and a logit difference of 0. Here each planted non-finite value must
fail with one line naming the file or image and how many values, and nothing is published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.cli import main
from edgeseg.convert.verify import ImageSet, compare, enforce
from edgeseg.errors import VerificationError, WeightsError
from edgeseg.manifest import Manifest
from edgeseg.models.weights import load_weights, save_checkpoint
from edgeseg.models.zoo import build_model
from edgeseg.runtime.backend import Backend
from edgeseg.scenes import SYNTHETIC_LABELS

SIZE = 64
CLASSES = 7


class TinyModel(torch.nn.Module):
    """A 1x1 convolution to 7 classes, returning torchvision's {'out': logits} like the real models."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> dict:
        return {"out": self.conv(x)}


class PlantedBackend(Backend):
    """Runs the same tiny model (so it agrees exactly), then plants `count` of `value` in image `image`'s output."""

    name = "planted"

    def __init__(self, model: torch.nn.Module, *, image: int, value: float, count: int) -> None:
        manifest = Manifest(
            Path("planted.onnx.json"),
            {"artifact": "planted.onnx", "backend": "planted", "output": {"kind": "logits", "layout": "NCHW"},
             "input": {"height": SIZE, "width": SIZE, "layout": "NCHW", "dtype": "float32",
                       "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
             "model": {"num_classes": CLASSES, "labels": list(SYNTHETIC_LABELS)}},
        )
        super().__init__(manifest)
        self.model, self.image, self.value, self.count, self.calls = model, image, value, count, 0

    @torch.no_grad()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.model(torch.from_numpy(batch))["out"].numpy().copy()
        if self.calls == self.image:
            out.reshape(-1)[: self.count] = self.value
        self.calls += 1
        return out


def image_set() -> ImageSet:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(4)]
    return ImageSet("real", "planted", images, None, [f"/data/img_{i}.jpg" for i in range(4)])


def test_clean_outputs_pass():
    model = TinyModel().eval()
    summary = compare(model, PlantedBackend(model, image=0, value=0.0, count=0), [image_set()],
                      precision="fp32", num_classes=CLASSES, progress=False)
    assert summary["passed"] and summary["argmax_agreement"] == 1.0 and "non_finite" not in summary
    enforce(summary, "planted.onnx")  # no exception


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_artifact_output_fails_naming_the_first_image_and_the_count(value):
    model = TinyModel().eval()
    summary = compare(model, PlantedBackend(model, image=2, value=value, count=5), [image_set()],
                      precision="fp32", num_classes=CLASSES, progress=False)
    assert summary["passed"] is False
    assert summary["non_finite"] == {"side": "artifact", "image": "/data/img_2.jpg", "set": "real", "count": 5,
                                     "values": CLASSES * SIZE * SIZE}
    with pytest.raises(VerificationError) as info:
        enforce(summary, "planted.onnx")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message == (f"planted.onnx: the artifact gave 5 non-finite values (NaN/Inf) out of {CLASSES * SIZE * SIZE} "
                       "on /data/img_2.jpg; not published")


def test_nan_everywhere_no_longer_agrees_perfectly():
    # The reported fault: NaN in every logit argmaxes to 0 on both sides when the reference is NaN too.
    model = TinyModel().eval()
    with torch.no_grad():
        model.conv.bias[0] = float("nan")
    backend = PlantedBackend(model, image=0, value=0.0, count=0)
    summary = compare(model, backend, [image_set()], precision="fp32", num_classes=CLASSES, progress=False)
    assert summary["passed"] is False
    assert summary["non_finite"]["side"] == "reference" and summary["non_finite"]["image"] == "/data/img_0.jpg"
    assert summary["non_finite"]["count"] == SIZE * SIZE
    with pytest.raises(VerificationError, match="the PyTorch reference gave 4096 non-finite values"):
        enforce(summary, "planted.onnx")


def _state_with(value: float, key: str = "classifier.4.weight") -> dict[str, torch.Tensor]:
    state = build_model("deeplabv3_mobilenet_v3_large", num_classes=CLASSES).state_dict()
    state[key].view(-1)[:3] = value
    return state


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_state_dict_is_refused_on_load(tmp_path, value):
    path = tmp_path / "bad.pth"
    torch.save(_state_with(value), path)
    with pytest.raises(WeightsError) as info:
        load_weights(str(path))
    assert str(info.value) == f"{path}: weights hold 3 non-finite values (NaN/Inf), the first in classifier.4.weight"


def test_non_finite_edgeseg_checkpoint_is_refused_by_convert_and_nothing_is_written(tmp_path, capsys):
    model = build_model("deeplabv3_mobilenet_v3_large", num_classes=CLASSES)
    with torch.no_grad():
        model.backbone["0"][0].weight.view(-1)[0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, model, arch="deeplabv3_mobilenet_v3_large", labels=SYNTHETIC_LABELS, resolution=64)
    out = tmp_path / "out"
    code = main(["convert", "--weights", str(path), "--resolution", "64", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nan.pt: weights hold 1 non-finite values (NaN/Inf), the first in backbone.0.0.weight" in err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("field, value, message", [
    ("arch", None, "edgeseg checkpoint lacks 'arch'"),
    ("arch", "resnet9000", "edgeseg checkpoint names an unknown architecture 'resnet9000'"),
    ("num_classes", "seven", "edgeseg checkpoint field 'num_classes' has the wrong type (str)"),
    ("labels", None, "edgeseg checkpoint lacks 'labels'"),
])
def test_checkpoint_with_a_missing_or_wrong_field_is_one_line(tmp_path, field, value, message):
    from edgeseg.models.weights import CHECKPOINT_FORMAT

    payload = {"format": CHECKPOINT_FORMAT, "arch": "deeplabv3_mobilenet_v3_large", "num_classes": CLASSES,
               "labels": list(SYNTHETIC_LABELS), "state_dict": {"x": torch.zeros(1)}}
    if value is None:
        del payload[field]
    else:
        payload[field] = value
    path = tmp_path / "ckpt.pt"
    torch.save(payload, path)
    with pytest.raises(WeightsError) as info:
        load_weights(str(path))
    assert str(info.value) == f"{path}: {message}"
