"""PyTorch backend: runs an edgeseg checkpoint (the FP32 reference) through the same runtime path."""

from __future__ import annotations

import numpy as np

from edgeseg.errors import ManifestError, first_line
from edgeseg.manifest import Manifest
from edgeseg.runtime.backend import Backend, require


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(manifest, threads=threads)
        torch = require("torch", "the PyTorch backend")
        tvm = require("torchvision.models", "the PyTorch backend")
        self.torch = torch
        if self.threads:
            torch.set_num_threads(int(self.threads))
        model_info = manifest.data["model"]
        try:
            payload = torch.load(manifest.artifact_path, map_location="cpu", weights_only=True)
            state = payload.get("state_dict", payload)
            model = tvm.get_model(model_info["architecture"], weights=None, weights_backbone=None,
                                  num_classes=int(model_info["num_classes"]), aux_loss=False) \
                if "deeplabv3" in model_info["architecture"] or "fcn" in model_info["architecture"] \
                else tvm.get_model(model_info["architecture"], weights=None, weights_backbone=None,
                                   num_classes=int(model_info["num_classes"]))
            model.load_state_dict({k: v.float() for k, v in state.items() if not k.startswith("aux_classifier.")})
        except (RuntimeError, KeyError, OSError) as exc:
            raise ManifestError(f"{manifest.artifact_path}: cannot load as {model_info['architecture']} "
                                f"({first_line(exc)[:160]})") from None
        self.model = model.eval()
        if manifest.data["input"].get("layout", "NCHW") != "NCHW" or manifest.output_spec().kind != "logits":
            raise ManifestError(f"{manifest.path}: the PyTorch backend runs NCHW float input with logits output only")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(batch))["out"].numpy()


BACKEND = TorchBackend
