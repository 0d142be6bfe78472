"""TensorRT backend (Jetson, or any NVIDIA GPU): a serialized engine run with pycuda buffers.

Given a bundle manifest (what `edgeseg convert --target jetson-*` writes) it finds the engine built
for this GPU and TensorRT version (by `edgeseg build-engine` or the bundle's trtexec script),
building it on first use (`runtime.engine_build`); given an engine manifest it loads that engine.
Either way it refuses an engine built on another GPU or TensorRT version, and runs it on the DLA
core it was built for (`IRuntime.DLA_core` is set before `deserialize_cuda_engine`).

Per frame: copy into a pinned host buffer, asynchronous host-to-device copy, enqueue, async
device-to-host copy, all on one CUDA stream, then one synchronize. Buffers and tensor addresses
are set up once, through the tensor-name API every supported TensorRT has (8.5+: `num_io_tensors`,
`get_tensor_name`, `set_tensor_address`, `execute_async_v3`). `close()` frees the device buffers,
the pinned host buffers and the stream, in that order, while the CUDA context is still current,
then releases the TensorRT objects and the context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeseg.errors import BackendUnavailableError, ManifestError
from edgeseg.formats.tensorrt.runtime.engine import (
    check_engine_compatible,
    current_gpu,
    engine_dla_core,
    require_tensorrt,
)
from edgeseg.formats.tensorrt.runtime.engine_build import ensure_engine
from edgeseg.manifest import Manifest
from edgeseg.runtime.backend import Backend, batch_shape
from edgeseg.runtime.model_io import TensorDecl, check_declared

if TYPE_CHECKING:
    import pycuda.driver as cuda
    import tensorrt as trt


@dataclass
class _Tensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    host: np.ndarray | None = None  # pinned (page-locked) host buffer
    device: cuda.DeviceAllocation | None = None


def _io_tensors(engine: trt.ICudaEngine) -> list[_Tensor]:
    import tensorrt as trt

    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dims = engine.get_tensor_shape(name)
        tensors.append(_Tensor(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                               tuple(dims[k] for k in range(len(dims))),
                               np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
    return tensors


def _declared(tensor: _Tensor) -> TensorDecl:
    return TensorDecl(tuple(d if d >= 0 else None for d in tensor.shape), tensor.dtype.name)  # -1: dynamic


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(manifest, threads=threads)
        version = require_tensorrt()
        import pycuda.driver as cuda

        self._tensors: list[_Tensor] = []
        self._stream: cuda.Stream | None = None
        self._closed = False
        # The runtime API TensorRT uses works in the device's primary context; pycuda joins it.
        self._cuda_context: cuda.Context | None = cuda.Device(0).retain_primary_context()
        self._cuda_context.push()
        try:
            self.engine_manifest = ensure_engine(manifest)
            check_engine_compatible(self.engine_manifest, current_gpu(), version)
            self._load(version)
        except BaseException:
            self._release()
            raise
        cuda.Context.pop()

    def _load(self, version: str) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        path = self.engine_manifest.artifact_path
        self._runtime: trt.Runtime | None = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        core = engine_dla_core(self.engine_manifest)
        if core is not None:  # an engine built for a DLA core runs on that core, not on core 0
            self._runtime.DLA_core = core
        self.engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            bundle = self.engine_manifest.data["engine"].get("bundle_manifest")
            raise ManifestError(f"{path.name}: TensorRT {version} cannot deserialize it; rebuild it here "
                                f"with `edgeseg build-engine {bundle}`")
        self.context: trt.IExecutionContext | None = self.engine.create_execution_context()
        self._tensors = _io_tensors(self.engine)
        self._check_io(path.name)
        for t in self._tensors:
            t.host = cuda.pagelocked_empty(t.shape, t.dtype)
            t.device = cuda.mem_alloc(t.host.nbytes)
            self.context.set_tensor_address(t.name, int(t.device))
        self._input = next(t for t in self._tensors if t.is_input)
        self._output = next(t for t in self._tensors if not t.is_input)
        self._stream = cuda.Stream()

    def _check_io(self, engine_name: str) -> None:
        inputs = [t for t in self._tensors if t.is_input]
        outputs = [t for t in self._tensors if not t.is_input]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ManifestError(f"{engine_name}: expected one input and one output, found {len(inputs)} and "
                                f"{len(outputs)}")
        spec = self.manifest.input_spec()
        expected = batch_shape(spec)
        if inputs[0].shape != expected or inputs[0].dtype != np.dtype(spec.dtype):
            raise ManifestError(f"{self.manifest.path.name}: says input {list(expected)} {spec.dtype} but "
                                f"{engine_name} "
                                f"takes {list(inputs[0].shape)} {inputs[0].dtype}")
        # The output too (kind, layout, class count, dtype), as every backend checks what its engine declares.
        check_declared(self.manifest, [_declared(t) for t in inputs], [_declared(t) for t in outputs])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import pycuda.driver as cuda

        if self._closed or self._cuda_context is None or self.context is None or self._stream is None:
            raise BackendUnavailableError(f"{self.manifest.path.name}: the TensorRT backend was closed; open it again")
        inp, out = self._input, self._output
        assert inp.host is not None and inp.device is not None and out.host is not None and out.device is not None
        if batch.shape != inp.shape or batch.dtype != inp.dtype:
            raise ManifestError(f"{self.engine_manifest.artifact_path.name}: takes {list(inp.shape)} "
                                f"{inp.dtype}, got {list(batch.shape)} {batch.dtype}")
        # Push/pop per call: the demo may call from another thread than the one that loaded the engine.
        self._cuda_context.push()
        try:
            np.copyto(inp.host, batch)
            cuda.memcpy_htod_async(inp.device, inp.host, self._stream)
            if not self.context.execute_async_v3(stream_handle=self._stream.handle):
                raise BackendUnavailableError(f"{self.engine_manifest.artifact_path.name}: TensorRT could not enqueue "
                                              "the inference")
            cuda.memcpy_dtoh_async(out.host, out.device, self._stream)
            self._stream.synchronize()
        finally:
            cuda.Context.pop()
        # The pinned buffer is reused by the next call; the caller gets its own array.
        return out.host.copy()

    def _release(self) -> None:
        """Free everything the CUDA context owns while it is current (it is pushed on entry), in
        reverse order of need: device buffers, pinned host buffers, the stream; then the TensorRT
        objects (execution context, engine, runtime); then pop and detach the context."""
        import pycuda.driver as cuda

        for t in self._tensors:
            if t.device is not None:
                t.device.free()
                t.device = None
        for t in self._tensors:
            if t.host is not None:
                # pagelocked_empty's array views a HostAllocation: free it now, not when the GC runs
                # after the context is gone (pycuda then skips cuMemFreeHost silently).
                free = getattr(t.host.base, "free", None)
                t.host = None
                if free is not None:
                    free()
        self._tensors = []
        self._stream = None  # the last reference: pycuda destroys the stream here, in this context
        self.context = self.engine = self._runtime = None
        if self._cuda_context is not None:
            cuda.Context.pop()
            self._cuda_context.detach()
            self._cuda_context = None

    def close(self) -> None:
        if self._closed:
            raise BackendUnavailableError(f"{self.manifest.path.name}: the TensorRT backend is already closed")
        self._closed = True
        if self._cuda_context is not None:
            self._cuda_context.push()
            self._release()


BACKEND = TensorRTBackend
