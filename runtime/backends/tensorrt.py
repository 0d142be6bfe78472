"""TensorRT backend (Jetson, or any NVIDIA GPU): a serialized engine run with pycuda buffers.

Given a bundle manifest (what `edgeseg convert --target jetson-*` writes) it finds the engine
built for this GPU and TensorRT version, building it on first use (`runtime.engine`); given an
engine manifest it loads that engine, and refuses one built on another GPU or TensorRT version.

Per frame: copy into a pinned host buffer, asynchronous host-to-device copy, enqueue, async
device-to-host copy, all on one CUDA stream, then one synchronize. Buffers and tensor addresses
are set up once. TensorRT 10 runs through the tensor-name API (`num_io_tensors`,
`get_tensor_name`, `set_tensor_address`, `execute_async_v3`); TensorRT 8.x (JetPack 5/6.0)
through the binding API (`num_bindings`, `binding_is_input`, `execute_async_v2`), which 10
removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import BackendUnavailableError, ManifestError
from edgeseg.manifest import Manifest
from edgeseg.runtime.backends import Backend
from edgeseg.runtime.engine import check_engine_compatible, current_gpu, ensure_engine, require_tensorrt


@dataclass
class _Tensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    host: Any = None  # pinned numpy array
    device: Any = None  # pycuda DeviceAllocation


def _io_tensors(trt: Any, engine: Any, tensor_api: bool) -> list[_Tensor]:
    tensors = []
    if tensor_api:
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            tensors.append(_Tensor(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                   tuple(engine.get_tensor_shape(name)), np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
    else:
        for i in range(engine.num_bindings):
            tensors.append(_Tensor(engine.get_binding_name(i), engine.binding_is_input(i),
                                   tuple(engine.get_binding_shape(i)), np.dtype(trt.nptype(engine.get_binding_dtype(i)))))
    return tensors


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(manifest, threads=threads)
        trt, cuda = require_tensorrt()
        self.cuda = cuda
        # The runtime API TensorRT uses works in the device's primary context; pycuda joins it.
        self._cuda_context = cuda.Device(0).retain_primary_context()
        self._cuda_context.push()
        self._tensors: list[_Tensor] = []
        try:
            self.engine_manifest = ensure_engine(manifest)
            check_engine_compatible(self.engine_manifest, current_gpu(cuda), trt.__version__)
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            path = self.engine_manifest.artifact_path
            self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ManifestError(f"{path.name}: TensorRT {trt.__version__} cannot deserialize it; rebuild it here "
                                    f"with `edgeseg build-engine {self.engine_manifest.data['engine'].get('bundle_manifest')}`")
            self.context = self.engine.create_execution_context()
            self.tensor_api = int(trt.__version__.split(".")[0]) >= 10
            self._tensors = _io_tensors(trt, self.engine, self.tensor_api)
            self._check_io(path.name)
            for t in self._tensors:
                t.host = cuda.pagelocked_empty(t.shape, t.dtype)
                t.device = cuda.mem_alloc(t.host.nbytes)
                if self.tensor_api:
                    self.context.set_tensor_address(t.name, int(t.device))
            self._bindings = [int(t.device) for t in self._tensors]  # binding-index order (8.x)
            self._input = next(t for t in self._tensors if t.is_input)
            self._output = next(t for t in self._tensors if not t.is_input)
            self.stream = cuda.Stream()
        except BaseException:
            self._release()
            self._cuda_context.pop()
            self._cuda_context.detach()
            self._cuda_context = None
            raise
        self._cuda_context.pop()

    def _check_io(self, engine_name: str) -> None:
        inputs = [t for t in self._tensors if t.is_input]
        outputs = [t for t in self._tensors if not t.is_input]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ManifestError(f"{engine_name}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        spec = self.manifest.input_spec()
        expected = (1, spec.height, spec.width, 3) if spec.layout == "NHWC" else (1, 3, spec.height, spec.width)
        if inputs[0].shape != expected or inputs[0].dtype != np.dtype(spec.dtype):
            raise ManifestError(f"{self.manifest.path.name}: says input {list(expected)} {spec.dtype} but {engine_name} "
                                f"takes {list(inputs[0].shape)} {inputs[0].dtype}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        cuda = self.cuda
        if batch.shape != self._input.shape or batch.dtype != self._input.dtype:
            raise ManifestError(f"{self.engine_manifest.artifact_path.name}: takes {list(self._input.shape)} "
                                f"{self._input.dtype}, got {list(batch.shape)} {batch.dtype}")
        # Push/pop per call: the demo may call from another thread than the one that loaded the engine.
        self._cuda_context.push()
        try:
            np.copyto(self._input.host, batch)
            cuda.memcpy_htod_async(self._input.device, self._input.host, self.stream)
            if self.tensor_api:
                ok = self.context.execute_async_v3(stream_handle=self.stream.handle)
            else:
                ok = self.context.execute_async_v2(bindings=self._bindings, stream_handle=self.stream.handle)
            if not ok:
                raise BackendUnavailableError(f"{self.engine_manifest.artifact_path.name}: TensorRT could not enqueue the inference")
            cuda.memcpy_dtoh_async(self._output.host, self._output.device, self.stream)
            self.stream.synchronize()
        finally:
            self._cuda_context.pop()
        # The pinned buffer is reused by the next call; the caller gets its own array.
        return self._output.host.copy()

    def _release(self) -> None:
        for t in self._tensors:
            if t.device is not None:
                t.device.free()
                t.device = None
        self._tensors = []
        for attr in ("context", "engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)

    def close(self) -> None:
        if getattr(self, "_cuda_context", None) is None:
            return
        self._cuda_context.push()
        try:
            self._release()
        finally:
            self._cuda_context.pop()
            self._cuda_context.detach()
            self._cuda_context = None


BACKEND = TensorRTBackend
