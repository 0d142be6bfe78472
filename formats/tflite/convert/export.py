"""TFLite / LiteRT export for the Android targets: FP32, FP16, dynamic-range INT8, full INT8.

PyTorch goes straight to a LiteRT flatbuffer with litert-torch (no TensorFlow), NHWC in and,
for logits, NHWC out, as Android camera pipelines and the LiteRT kernels want it. Quantization
then runs on that flatbuffer with ai-edge-quantizer:

- fp16: weights stored as float16 with DEQUANTIZE ops in front of their consumers (the classic
  TFLite FP16 model: half the size; the GPU delegate computes in fp16, the CPU in fp32);
- int8-dynamic: per-channel int8 weights, activations quantized on the fly by the kernels;
- int8: per-channel symmetric int8 weights and per-tensor int8 activations whose ranges come
  from calibration images passed through exactly the manifest's preprocessing; input/output
  float (quantize/dequantize inside the model), int8 or uint8 (`--int8-io`).

Every artifact is stored with inline, 16-byte aligned buffers (readable by any TFLite runtime),
carries TFLite Model Metadata for an image segmenter (formats/tflite/convert/metadata_writer.py: normalization,
RGB, size, labels as a TENSOR_AXIS_LABELS associated file; what MediaPipe's ImageSegmenter and
Android's tools read), and holds builtin ops only (checked on the written file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import edgeseg
from edgeseg.convert.calibration import calibration_images
from edgeseg.convert.export import ExportJob, ExportResult
from edgeseg.convert.options import DEFAULT_CALIBRATION_IMAGES
from edgeseg.convert.wrap import ExportWrapper
from edgeseg.errors import BackendUnavailableError, ConfigError, first_line
from edgeseg.formats.tflite import AI_EDGE_QUANTIZER, FORMAT, LITERT, LITERT_TORCH
from edgeseg.formats.tflite.convert import metadata_writer as tflite_metadata
from edgeseg.formats.tflite.convert import ops as tflite_ops
from edgeseg.formats.tflite.convert import region_split, xnnpack
from edgeseg.formats.tflite.runtime.metadata import LABELS_FILE
from edgeseg.optional import require
from edgeseg.runtime.preprocess import InputSpec, preprocess_rgb

INT8_IO = ("float", "int8", "uint8")
# What ai-edge-quantizer's static INT8 recipe does with the calibration images (qsv_utils.moving_average_update).
TFLITE_CALIBRATION = "per-image min/max, exponential moving average with weight 0.95 on the running value"
# TFLite schema TensorType values, as modify_model_interface takes them.
_TFLITE_TENSOR_TYPE = {"int8": 9, "uint8": 3}
BUFFER_ALIGNMENT = 16  # what the TFLite converter guarantees for constant buffers (SIMD loads, XNNPACK)

QUANTIZATION = {
    "fp32": "none",
    "fp16": "float16 weights (ai-edge-quantizer float casting, weight-only), float32 activations",
    "int8-dynamic": "ai-edge-quantizer dynamic_wi8_afp32: per-channel int8 weights, activations quantized at run time",
    "int8": "ai-edge-quantizer static_wi8_ai8: per-channel symmetric int8 weights, per-tensor asymmetric int8 "
            "activations from min/max over the calibration images; HARD_SWISH kept in float (XNNPACK runs it only "
            "in float), so the graph is one XNNPACK partition",
}


# MediaPipe's ImageSegmenter applies one mean and one std to every channel (its NormalizationOptions
# reader refuses per-channel values), so the ImageNet per-channel normalization lives inside the model
# and a float input takes RGB pixels 0..255 as float: metadata mean 0, std 1 for every tool.
FLOAT_PIXELS_MEAN = (0.0, 0.0, 0.0)
FLOAT_PIXELS_STD = (1 / 255, 1 / 255, 1 / 255)  # the manifest's 0..1 domain: x = pixel


def float_input_spec(job: ExportJob) -> InputSpec:
    """What the float model takes: uint8 NHWC pixels (--fuse-preprocessing) or the same pixels as float32
    NHWC; either way the ImageNet normalization is inside the model."""
    if job.fuse_preprocessing:
        return InputSpec(height=job.height, width=job.width, layout="NHWC", dtype="uint8", mean=None, std=None)
    return InputSpec(height=job.height, width=job.width, layout="NHWC", dtype="float32",
                     mean=FLOAT_PIXELS_MEAN, std=FLOAT_PIXELS_STD)


class _ChannelsLastOutput(torch.nn.Module):
    """NHWC logits out: what LiteRT computes natively, so no TRANSPOSE is left at the graph's end."""

    def __init__(self, wrapper: ExportWrapper) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.wrapper(x)
        return y.permute(0, 2, 3, 1) if self.wrapper.output == "logits" else y


class _CalibrationBatches:
    """Re-iterable calibration inputs, preprocessed on the fly (ai-edge-quantizer iterates twice)."""

    def __init__(self, images: list[np.ndarray], spec: InputSpec, input_name: str) -> None:
        self.images, self.spec, self.input_name = images, spec, input_name

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for image in self.images:
            yield {self.input_name: preprocess_rgb(image, self.spec)}


@contextlib.contextmanager
def _native_logs_to_buffer() -> Iterator[None]:
    """Keep the converter's C++ log lines (absl INFO, XNNPACK notices) off the console; replay them
    on failure so nothing is lost when it matters."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace")[-4000:])


def _require(module: str):
    """A converter package (`edgeseg.optional.require`): a missing one leaves the tflite targets unavailable here."""
    return require(module, purpose="the tflite format", error=BackendUnavailableError)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def convert_float(job: ExportJob, spec: InputSpec) -> bytes:
    """The FP32 LiteRT flatbuffer of the wrapped model, traced at the job's fixed resolution."""
    with _native_logs_to_buffer():  # importing it already logs (absl, oneDNN, torchao notices)
        litert_torch = _require("litert_torch")
    litert_torch.config.show_progress = False  # its own per-pass log; the stage bar below reports progress
    # NHWC pixels in (uint8, or float 0..255: `.float()` is a no-op) with the normalization in the graph.
    wrapper = ExportWrapper(job.model, mean=job.weights.mean, std=job.weights.std, output=job.output_kind,
                            fuse_preprocessing=True).eval()
    module = _ChannelsLastOutput(wrapper).eval()
    if spec.dtype == "uint8":
        sample = torch.randint(0, 256, (1, job.height, job.width, 3), dtype=torch.uint8)
    else:
        sample = torch.zeros(1, job.height, job.width, 3)
    try:
        with _native_logs_to_buffer():
            return bytes(litert_torch.convert(module, (sample,)).model_content())
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(
            f"{job.weights.arch}: litert-torch cannot convert it for {job.target.name} "
            f"({first_line(exc)[:200]})"
        ) from None


def _signature_input_name(model: bytes) -> tuple[str, str]:
    """The (only) signature key of a flatbuffer and the name of its input."""
    interpreter_module = _require("ai_edge_litert.interpreter")
    with _native_logs_to_buffer():
        interpreter = interpreter_module.Interpreter(model_content=model)
    signatures = interpreter.get_signature_list()
    (key, signature), = signatures.items()
    return key, signature["inputs"][0]


def quantize(job: ExportJob, model: bytes, spec: InputSpec, images: list[np.ndarray] | None) -> bytes:
    """Apply the job's precision to the FP32 flatbuffer with ai-edge-quantizer."""
    if job.precision == "fp32":
        return model
    _require("ai_edge_quantizer")
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe

    ops = qtyping.TFLOperationName
    q = quantizer.Quantizer(bytearray(model))
    if job.precision == "fp16":
        q.add_weight_only_config(".*", ops.ALL_SUPPORTED, 16,
                                 algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
        calibration = None
    elif job.precision == "int8-dynamic":
        q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        calibration = None
    else:
        if images is None:
            raise ConfigError(f"{job.target.name} {job.precision}: static INT8 needs calibration images")
        # Float in and out (QUANTIZE / DEQUANTIZE inside; `set_io_type` narrows them on request), and
        # one XNNPACK partition (convert.xnnpack).
        xnnpack.int8_recipe(q)
        key, input_name = _signature_input_name(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibration = q.calibrate({key: _CalibrationBatches(images, spec, input_name)},
                                      num_threads=max(1, min(4, os.cpu_count() or 1)))
    with _native_logs_to_buffer():
        quantized = q.quantize(calibration, enable_progress_report=False).quantized_model
    if quantized is None:
        raise ConfigError(f"{job.weights.arch}: ai-edge-quantizer returned no {job.precision} model")
    return bytes(quantized)


class _AlignedBuffer:
    """A flatbuffer `Buffer` whose bytes start on a 16-byte boundary (the generated Python
    `BufferT.Pack` aligns to 1, the TFLite converter to 16)."""

    def __init__(self, data: np.ndarray | Sequence[int] | None) -> None:
        self.data = data

    def Pack(self, builder) -> int:  # noqa: N802 - the flatbuffers object-API name
        from ai_edge_litert import schema_py_generated as schema

        offset = None
        if self.data is not None and len(self.data):
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            offset = builder.EndVector()
        schema.BufferStart(builder)
        if offset is not None:
            schema.BufferAddData(builder, offset)
        return schema.BufferEnd(builder)


def inline_buffers(model: bytes) -> bytes:
    """The same model with every constant buffer stored inside the flatbuffer, 16-byte aligned.

    ai-edge-quantizer writes buffers after the flatbuffer (offset/size); older runtimes and
    `modify_model_interface` read only inline buffers.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))  # resolves offset buffers
    # An _AlignedBuffer packs as a BufferT does (the object API calls only Pack).
    tree.buffers = [_AlignedBuffer(b.data) for b in tree.buffers or []]  # pyright: ignore[reportAttributeAccessIssue]
    # The generated ModelT's InitFromObj does not match flatbuffer_utils' own Packable protocol.
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))  # pyright: ignore[reportArgumentType]


def set_io_type(model: bytes, io_type: str, scratch: Path) -> bytes:
    """Replace the float input/output of a fully quantized model by int8 or uint8 tensors
    (TFLite's modify_model_interface: drops the boundary QUANTIZE/DEQUANTIZE, or requantizes to uint8)."""
    mmi = _require("ai_edge_litert._pywrap_modify_model_interface")
    src, dst = scratch / f".float-io{FORMAT.suffix}", scratch / f".{io_type}-io{FORMAT.suffix}"
    src.write_bytes(model)
    try:
        with _native_logs_to_buffer():
            status = mmi.modify_model_interface(str(src), str(dst), _TFLITE_TENSOR_TYPE[io_type],
                                                _TFLITE_TENSOR_TYPE[io_type])
        if status != 0 or not dst.is_file():
            raise ConfigError(f"--int8-io {io_type}: TFLite could not change the model's input/output type (status "
                              f"{status})")
        return dst.read_bytes()
    finally:
        for path in (src, dst):
            path.unlink(missing_ok=True)


def metadata_facts(job: ExportJob, spec: InputSpec) -> tflite_metadata.SegmenterFacts:
    """What the model's TFLite Model Metadata says, from the job (author/licence where the checkpoint has them)."""
    weights = job.weights
    what = "class mask" if job.output_kind == "mask" else "logits"
    return tflite_metadata.SegmenterFacts(
        name=job.basename,
        description=f"{weights.arch} semantic segmentation, {weights.num_classes} classes, {job.precision}, "
                    f"{job.height}x{job.width} RGB in, {what} out; converted by edgeseg for {job.target.name}.",
        version=(f"edgeseg {edgeseg.__version__}; weights sha256 {(weights.sha256 or 'unknown')[:16]} "
                 f"({weights.source})"),
        labels=tuple(weights.labels), height=job.height, width=job.width, output_kind=job.output_kind,
        mean=spec.mean, std=spec.std,
        author=weights.metadata.get("author"), license=weights.metadata.get("license"),
    )


def _tensor_quantization(detail: dict) -> dict | None:
    scale, zero_point = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)} if scale else None


def describe_io(job: ExportJob, path: Path) -> tuple[InputSpec, dict]:
    """The manifest's input spec and output entry, read from the written model itself."""
    interpreter_module = _require("ai_edge_litert.interpreter")
    with _native_logs_to_buffer():
        interpreter = interpreter_module.Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    spec = float_input_spec(job)
    dtype = np.dtype(inp["dtype"]).name
    quant = _tensor_quantization(inp) if dtype in ("int8", "uint8") and not job.fuse_preprocessing else None
    spec = InputSpec(height=spec.height, width=spec.width, layout="NHWC", dtype=dtype, mean=spec.mean, std=spec.std,
                     quant_scale=quant["scale"] if quant else None,
                     quant_zero_point=quant["zero_point"] if quant else None)
    output = {"name": out["name"], "kind": job.output_kind, "layout": "NHWC" if job.output_kind == "logits" else "NHW",
              "dtype": np.dtype(out["dtype"]).name}
    out_quant = _tensor_quantization(out) if job.output_kind == "logits" else None
    if out_quant:
        # The LiteRT backend dequantizes with these and hands float logits on.
        output["quantization"] = out_quant
    return spec, output


def _check_options(job: ExportJob) -> str:
    int8_io = job.options.get("int8_io", "float")
    if int8_io not in INT8_IO:
        raise ConfigError(f"--int8-io {int8_io}: choose one of {', '.join(INT8_IO)}")
    if int8_io != "float" and job.precision != "int8":
        raise ConfigError(f"--int8-io {int8_io}: only a full-INT8 model (--precision int8) has integer input/output")
    method = job.options.get("calib_method")
    if job.precision == "int8" and method is not None:
        raise ConfigError(f"--calib-method {method}: applies to Q/DQ ONNX (host-cpu, Jetson); TFLite INT8 uses "
                          f"ai-edge-quantizer's own calibration: {TFLITE_CALIBRATION}")
    return int8_io


def export(job: ExportJob, staging: Path) -> ExportResult:
    """Convert `job.model` to a `.tflite` for an android-* target; see the module docstring."""
    int8_io = _check_options(job)
    count = int(job.options.get("calib_images") or DEFAULT_CALIBRATION_IMAGES)
    # Refuse INT8 without real images before the slow conversion starts.
    images = calibration_images(job.calibration, count, precision="int8") if job.precision == "int8" else None
    spec = float_input_spec(job)
    split_record = None
    if job.options.get("region_split") is False:
        split_record = {"applied": False, "reason": "disabled (--no-region-split)"}
    elif job.target.litert is not None and job.target.litert.splits_dilated_convs:
        check_images = [image for image_set in job.verification_sets() for image in image_set.images]
        model, split_record = region_split.apply_for_export(job.model, job.height, job.width,
                                                            check_images[:region_split.CHECK_IMAGES])
        job = dataclasses.replace(job, model=model)
    stages = (["convert (litert-torch)"] + (["quantize (ai-edge-quantizer)"] if job.precision != "fp32" else [])
              + ["write + check ops"])
    bar = tqdm(total=len(stages), desc=f"tflite {job.precision}", unit="stage", disable=not job.progress)
    try:
        bar.set_postfix_str(stages[0])
        model = convert_float(job, spec)
        bar.update()
        if job.precision != "fp32":
            bar.set_postfix_str(stages[1])
            model = quantize(job, model, spec, images)
            bar.update()
        bar.set_postfix_str(stages[-1])
        model = inline_buffers(model)
        if int8_io != "float":
            model = set_io_type(model, int8_io, staging)
        path = job.staged_file(staging, "tflite")
        # Metadata last (the sha256 the manifest records covers it); populate re-packs, inline_buffers re-aligns.
        facts = metadata_facts(job, spec)
        path.write_bytes(tflite_metadata.populate(model, facts, repack=inline_buffers))
        tflite_metadata.verify(path, facts)
        ops = tflite_ops.read_ops(path)
        tflite_ops.require_builtin_only(ops, path.name)
        bar.update()
    finally:
        bar.close()
    input_spec, output = describe_io(job, path)
    details = {
        "exporter": LITERT_TORCH.distribution,
        "layout": "NHWC input" + (", NHWC logits" if job.output_kind == "logits" else ", NHW uint8 mask"),
        "quantization": QUANTIZATION[job.precision],
        "metadata": f"TFLite Model Metadata (image segmenter): RGB {job.height}x{job.width}, "
                    + ("no NormalizationOptions (uint8 pixels, normalized in the model)" if spec.mean is None
                       else "NormalizationOptions mean/std in 0..255") + f", labels {LABELS_FILE} (TENSOR_AXIS_LABELS)",
        "builtin_ops_only": True,
        "ops": tflite_ops.op_counts(ops),
        # How many pieces LiteRT's CPU runtime (XNNPACK) cuts the graph into; 1 = all of it delegated.
        "xnnpack_partitions": xnnpack.partitions(path),
    }
    if split_record is not None:
        details["region_split"] = split_record
    if job.precision == "int8" and images is not None:
        details["int8_io"] = int8_io
        details["calibration"] = {"source": job.calibration, "images": len(images), "method": TFLITE_CALIBRATION,
                                  "preprocessing": "runtime.preprocess with the float input spec "
                                                   f"({spec.dtype} NHWC RGB pixels 0..255, "
                                                   "ImageNet normalization in the model)"}
    if job.target.litert is not None and job.target.litert.delegate == "gpu":
        unsupported = tflite_ops.gpu_unsupported(ops)
        details["gpu_delegate_unsupported_ops"] = unsupported
        print(f"{path.name}: {tflite_ops.describe_gpu_unsupported(unsupported)}", file=sys.stderr)
    used = (LITERT_TORCH, LITERT, *((AI_EDGE_QUANTIZER,) if job.precision != "fp32" else ()))
    tools = {p.distribution: _version(p.distribution) for p in used}
    return ExportResult(artifact=path, input=input_spec.to_dict(), output=output, details=details, tools=tools)
