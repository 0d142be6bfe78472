"""The engines benchmarks/scripts/peers.py times: edgeseg's artifacts and each peer's own conversion and runner.

Each peer is built the way a user following that tool's documentation would build it, with its defaults;
a peer whose package is missing or whose conversion fails raises `PeerUnavailable` with the reason.
Converted peers are cached in the work folder (written under a temporary name, then renamed).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import first_line
from edgeseg.formats import all_formats
from edgeseg.manifest import Manifest
from edgeseg.optional import install_hint, try_import
from edgeseg.runtime.postprocess import output_to_mask
from edgeseg.runtime.preprocess import InputSpec, preprocess_rgb


class PeerUnavailable(Exception):
    """A peer that cannot run here; the message says why (not installed, conversion failed)."""


class Runner:
    """One engine with one artifact: `prepare` (outside the timing), `run`, `mask`, `close`."""

    engine = ""
    label = ""

    def __init__(self, spec: InputSpec, kind: str = "logits", layout: str = "NCHW") -> None:
        self.spec, self.kind, self.layout = spec, kind, layout

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return preprocess_rgb(image, self.spec)

    def run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def mask(self, output: np.ndarray) -> np.ndarray:
        return output_to_mask(output, self.kind, self.layout)

    def close(self) -> None:
        pass


class EdgesegRunner(Runner):
    """An edgeseg artifact through its own backend, as `edgeseg bench` runs it."""

    ENGINES = {"onnxruntime": "ONNX Runtime", "litert": "LiteRT (XNNPACK)", "openvino": "OpenVINO"}

    def __init__(self, manifest: Manifest, threads: int) -> None:
        from edgeseg.runtime.backend import open_backend

        output = manifest.output_spec()
        super().__init__(manifest.input_spec(), output.kind, output.layout)
        self.manifest = manifest
        self.backend = open_backend(manifest, threads=threads)
        tools = manifest.data.get("tools", {})
        version = tools.get(manifest.backend, "")
        self.engine = f"{self.ENGINES.get(manifest.backend, manifest.backend)} {version}".strip()
        hint = manifest.data.get("runtime", {}).get("inference_precision")
        self.label = (f"edgeseg {manifest.data['target']} {manifest.data['precision'].upper()}"
                      + (f" (hint {hint})" if hint else ""))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.backend.infer(batch)

    def close(self) -> None:
        self.backend.close()


def convert_cached(args: Any, target: str, precision: str, resolution: int, out: Path) -> Manifest:
    """edgeseg's artifact for `target` x `precision`, converted into `out` unless it is already there."""
    from edgeseg.convert.pipeline import ConvertRequest, convert, plan
    from edgeseg.errors import ManifestError
    from edgeseg.manifest import load_manifest, manifest_path_for

    request = ConvertRequest(target=target, precision=precision, resolution=str(resolution), weights=args.weights,
                             out=out, calibration=str(args.voc) if precision == "int8" else None,
                             verify_images=args.verify_images, progress=False,
                             options={"calib_images": args.calib_images})
    artifact = plan(request).artifact
    if manifest_path_for(artifact).is_file():
        try:
            return load_manifest(artifact)
        except ManifestError:
            pass  # a stale pair: convert again
    print(f"  edgeseg {target} {precision} {resolution}")
    convert(request)
    return load_manifest(artifact)


def _module(name: str, peer: str, package: str) -> Any:
    imported = try_import(name)
    if imported.module is None:
        raise PeerUnavailable(f"{package} does not import here ({imported.error}); {install_hint('peers')}")
    return imported.module


def _cached(path: Path, make: Callable[[Path], None], peer: str) -> Path:
    """`path`, made by `make(tmp)` first when absent; a failed conversion is this peer's reason not to run."""
    if path.is_file():
        return path
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    print(f"  {peer}: converting")
    try:
        make(tmp)
    except PeerUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a peer's converter is reported, not fatal
        raise PeerUnavailable(f"its conversion failed ({type(exc).__name__}: {first_line(exc)[:200]})") from None
    tmp.replace(path)
    ir = all_formats()["openvino"]
    if path.suffix == ir.suffix and ir.weights_suffix and tmp.with_suffix(ir.weights_suffix).is_file():  # its weights
        tmp.with_suffix(ir.weights_suffix).replace(path.with_suffix(ir.weights_suffix))
    return path


def _wrapped_model(args: Any):
    """The model as trained (no ASPP rewrite), one tensor in (normalized NCHW float), logits out."""
    from edgeseg.convert.wrap import ExportWrapper
    from edgeseg.models.weights import load_weights

    weights = load_weights(args.weights)
    return ExportWrapper(weights.build(), mean=weights.mean, std=weights.std, output="logits",
                         fuse_preprocessing=False).eval()


# --------------------------------------------------------------------------- ONNX Runtime


class OrtRunner(Runner):
    def __init__(self, path: Path, spec: InputSpec, threads: int, label: str) -> None:
        import onnxruntime as ort

        super().__init__(spec)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.engine, self.label = f"ONNX Runtime {ort.__version__}", label

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])  # typed dense or sparse: dense here


def ort_int8(args: Any, resolution: int, out: Path, reference: Manifest, calibration: list) -> Runner:
    """quantize_static with every default (QDQ, int8 activations and weights, per-tensor, MinMax)."""
    q = _module("onnxruntime.quantization", "ort-int8", "onnxruntime")
    spec = reference.input_spec()

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": preprocess_rgb(image, spec)} for image in calibration])

        def get_next(self):
            return next(self.batches, None)

    path = _cached(out / f"peer-ort-quantize-static-{resolution}{all_formats()['onnx'].suffix}",
                   lambda tmp: q.quantize_static(str(reference.artifact_path), str(tmp), Reader()), "ort-int8")
    return OrtRunner(path, spec, args.threads, "quantize_static defaults, INT8 of edgeseg's FP32 ONNX")


# --------------------------------------------------------------------------- OpenVINO


class OpenVINORunner(Runner):
    def __init__(self, model: Any, spec: InputSpec, threads: int, label: str) -> None:
        ov = _module("openvino", "openvino", "openvino")
        super().__init__(spec)
        # A user's call: the device and the thread count, OpenVINO's defaults for everything else.
        self.compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads})
        self.request = self.compiled.create_infer_request()
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.engine = f"OpenVINO {ov.__version__.split('-')[0]}"
        self.label = f"{label}, its default hint: {str(hint.get_type_name())}"

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.request is None:
            raise RuntimeError(f"{self.label}: run after close")
        self.request.infer({0: batch}, share_inputs=True)
        return np.array(self.request.get_output_tensor(0).data, copy=True)

    def close(self) -> None:
        self.request = self.compiled = None


def openvino_default(args: Any, resolution: int, out: Path, reference: Manifest, calibration: list) -> Runner:
    return OpenVINORunner(str(reference.artifact_path), reference.input_spec(), args.threads, "edgeseg's FP32 ONNX")


def openvino_nncf(args: Any, resolution: int, out: Path, reference: Manifest, calibration: list) -> Runner:
    """nncf.quantize with its defaults on the same ONNX, the same calibration images."""
    ov = _module("openvino", "openvino-nncf", "openvino")
    nncf = _module("nncf", "openvino-nncf", "nncf")
    spec = reference.input_spec()

    def make(tmp: Path) -> None:
        dataset = nncf.Dataset(calibration, lambda image: preprocess_rgb(image, spec))
        quantized = nncf.quantize(ov.convert_model(str(reference.artifact_path)), dataset,
                                  subset_size=len(calibration))
        ov.save_model(quantized, str(tmp))

    path = _cached(out / f"peer-nncf-default-{resolution}{all_formats()['openvino'].suffix}", make, "openvino-nncf")
    return OpenVINORunner(str(path), spec, args.threads, "NNCF defaults, INT8 of the same FP32 ONNX")


# --------------------------------------------------------------------------- ExecuTorch


class ExecuTorchRunner(Runner):
    def __init__(self, path: Path, spec: InputSpec, threads: int, label: str) -> None:
        import torch

        runtime = _module("executorch.runtime", "executorch", "executorch")
        portable = _module("executorch.extension.pybindings.portable_lib", "executorch", "executorch")
        super().__init__(spec)
        portable._unsafe_reset_threadpool(threads)  # XNNPACK's threadpool, shared by every method in the process
        self.torch = torch
        self.method = runtime.Runtime.get().load_program(str(path)).load_method("forward")
        self.engine = f"ExecuTorch {importlib.metadata.version('executorch')} (XNNPACK)"
        self.label = label

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.method.execute([self.torch.from_numpy(batch)])[0].numpy()


def _lower_to_pte(exported: Any, tmp: Path) -> None:
    exir = _module("executorch.exir", "executorch", "executorch")
    xnnpack = _module("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch", "executorch")
    program = exir.to_edge_transform_and_lower(exported, partitioner=[xnnpack.XnnpackPartitioner()]).to_executorch()
    tmp.write_bytes(program.buffer)


def executorch_fp32(args: Any, resolution: int, out: Path, reference: Manifest, calibration: list) -> Runner:
    import torch

    _module("executorch.exir", "executorch", "executorch")
    spec = reference.input_spec()
    example = (torch.from_numpy(preprocess_rgb(calibration[0], spec)),)

    def make(tmp: Path) -> None:
        with torch.no_grad():
            _lower_to_pte(torch.export.export(_wrapped_model(args), example), tmp)

    path = _cached(out / f"peer-executorch-fp32-{resolution}.pte", make, "executorch")
    return ExecuTorchRunner(path, spec, args.threads, "FP32 of the same weights (torch.export, XNNPACK partitioner)")


def executorch_int8(args: Any, resolution: int, out: Path, reference: Manifest, calibration: list) -> Runner:
    """PT2E: XNNPACKQuantizer's symmetric per-channel config, calibrated on the same images."""
    import torch

    quantizer_module = _module("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch-int8",
                               "executorch")
    pt2e = _module("torchao.quantization.pt2e.quantize_pt2e", "executorch-int8", "torchao")
    spec = reference.input_spec()
    batches = [torch.from_numpy(preprocess_rgb(image, spec)) for image in calibration]

    def make(tmp: Path) -> None:
        quantizer = quantizer_module.XNNPACKQuantizer().set_global(
            quantizer_module.get_symmetric_quantization_config(is_per_channel=True))
        with torch.no_grad():
            graph = torch.export.export(_wrapped_model(args), (batches[0],)).module()
            prepared = pt2e.prepare_pt2e(graph, quantizer)
            for batch in batches:
                prepared(batch)
            converted = pt2e.convert_pt2e(prepared)
            _lower_to_pte(torch.export.export(converted, (batches[0],)), tmp)

    path = _cached(out / f"peer-executorch-pt2e-int8-{resolution}.pte", make, "executorch-int8")
    return ExecuTorchRunner(path, spec, args.threads, "PT2E INT8 (per-channel), same calibration images")


# --------------------------------------------------------------------------- litert-torch


class LiteRTRunner(Runner):
    def __init__(self, path: Path, spec: InputSpec, threads: int, num_classes: int, label: str) -> None:
        from edgeseg.formats.tflite.runtime.runner import interpreter_module

        self.interpreter = interpreter_module().Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        layout = "NCHW" if int(self.output["shape"][1]) == num_classes else "NHWC"
        super().__init__(spec, "logits", layout)
        self.engine, self.label = "LiteRT (XNNPACK)", label

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])


def litert_torch_plain(args: Any, resolution: int, out: Path, reference: Manifest, calibration: list) -> Runner:
    """litert_torch.convert of the model as trained: no ASPP rewrite, no NHWC recipe, FP32."""
    import torch

    litert_torch = _module("litert_torch", "litert-torch", "litert-torch")
    spec = reference.input_spec()
    example = (torch.from_numpy(preprocess_rgb(calibration[0], spec)),)
    path = _cached(out / f"peer-litert-torch-plain-{resolution}{all_formats()['tflite'].suffix}",
                   lambda tmp: litert_torch.convert(_wrapped_model(args), example).export(str(tmp)), "litert-torch")
    return LiteRTRunner(path, spec, args.threads, reference.num_classes,
                        "plain litert-torch FP32 of the same weights (NCHW, no rewrite)")


PEERS: dict[str, Callable[..., Runner]] = {
    "ort-int8": ort_int8, "openvino": openvino_default, "openvino-nncf": openvino_nncf,
    "executorch": executorch_fp32, "executorch-int8": executorch_int8, "litert-torch": litert_torch_plain,
}
