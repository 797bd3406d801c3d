"""A TensorRT engine built from ONNX, timed with CUDA events around execute_async_v3.

Written against the TensorRT 10 Python API: build_serialized_network, named I/O tensors, one
optimization profile over dynamic batch and sequence, one timing cache per device profile.
TensorRT 11 dropped the FP16 builder flag: there the ONNX graph itself is exported in fp16 and
the network is strongly typed. `tensorrt` is imported only inside this backend's methods.

Verified only where TensorRT is importable (the tensorrt tests in tests/devices/test_gpu.py skip elsewhere).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.artifacts import cache_kind, write_atomic
from pipeline.devices.base import Backend, Runner
from pipeline.devices.torch_cuda import gpu_fingerprint, require_cuda
from pipeline.errors import DeviceUnavailable, PipelineError
from pipeline.onnxio import export_onnx

WORKSPACE_BYTES = 4 << 30  # enough for every tactic of a BERT-base-sized student at seq 512


def timing_cache_path(profile_name: str) -> Path:
    """One timing cache per device profile, shared by every engine built for it (a profile builds
    dozens, all from the same few layer shapes). PIPELINE_CACHE moves it."""
    return cache_kind("tensorrt") / f"{profile_name}.timing-cache"


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt


def _fp16_flag(trt):
    return getattr(trt.BuilderFlag, "FP16", None)  # None on TensorRT 11+


class TensorRTRunner(Runner):
    def __init__(self, engine, inputs: dict[str, torch.Tensor]):
        trt = _trt()
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.tensors: dict[str, torch.Tensor] = {}
        for name, value in inputs.items():
            dtype = _torch_dtype(trt, engine.get_tensor_dtype(name))
            self.tensors[name] = value.to("cuda", dtype).contiguous()
            self.context.set_input_shape(name, tuple(value.shape))
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                shape = tuple(self.context.get_tensor_shape(name))
                dtype = _torch_dtype(trt, engine.get_tensor_dtype(name))
                self.tensors[name] = torch.empty(shape, dtype=dtype, device="cuda")
                self.output = name
        for name, t in self.tensors.items():
            self.context.set_tensor_address(name, t.data_ptr())
        torch.cuda.synchronize()  # inputs were copied on the default stream; the engine runs on self.stream
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise PipelineError("TensorRT execute_async_v3 failed")

    def run(self) -> np.ndarray:
        self._execute()
        self.stream.synchronize()
        return self.tensors[self.output].float().cpu().numpy()

    def timed_run(self) -> float:
        self.start.record(self.stream)
        self._execute()
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.elapsed_time(self.end)

    def close(self) -> None:
        del self.context, self.engine, self.tensors


def _torch_dtype(trt, dt) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int64: torch.int64}
    return table[dt]


class TensorRT(Backend):
    name = "tensorrt"
    requires = "the TensorRT Python package (10.x) and a CUDA GPU"
    onnx = "plain"

    def check_available(self) -> None:
        trt = _trt()
        if trt is None:
            raise DeviceUnavailable(
                f"device '{self.profile.name}' needs the TensorRT Python package, which is not importable "
                "here (pip install 'pipeline[tensorrt]' on a machine with an NVIDIA GPU)"
            )
        require_cuda(self.profile.name)

    def fingerprint(self) -> dict[str, str]:
        # TensorRT's tactics are the kernels; torch only exports the ONNX graph and holds buffers.
        return {**self.base_fingerprint(), **gpu_fingerprint(), "tensorrt": _trt().__version__}

    def build_engine(self, onnx_path: Path, inputs: dict[str, torch.Tensor], cache_path: Path) -> bytes:
        """ONNX -> serialized engine with one optimization profile around the inputs' shapes."""
        trt = _trt()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        fp16 = self.profile.precision == "fp16"
        strongly_typed = fp16 and _fp16_flag(trt) is None
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise PipelineError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if fp16 and not strongly_typed:
            config.set_flag(_fp16_flag(trt))
        profile = builder.create_optimization_profile()
        for name, value in inputs.items():
            b, s = value.shape[:2]
            # Dynamic batch and sequence: from 1 up to twice the profiled shape, tuned at it.
            profile.set_shape(name, (1, 1, *value.shape[2:]), tuple(value.shape), (2 * b, 2 * s, *value.shape[2:]))
        config.add_optimization_profile(profile)
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise PipelineError(f"TensorRT failed to build an engine from {onnx_path}")
        data = bytes(config.get_timing_cache().serialize())
        write_atomic(cache_path, lambda tmp: tmp.write_bytes(data))
        return bytes(engine)

    def _open(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
              onnx_path: Path | None = None) -> Runner:
        trt = _trt()
        workdir = Path(workdir)
        export_module, export_inputs = module, inputs
        strongly_typed = self.profile.precision == "fp16" and _fp16_flag(trt) is None
        if strongly_typed:
            # Strongly typed networks take their precision from the graph: an fp32 file will not do.
            export_module = copy.deepcopy(module).half()
            export_inputs = {k: v.half() if v.is_floating_point() else v for k, v in inputs.items()}
        if onnx_path is None or strongly_typed:
            onnx_path = export_onnx(export_module, export_inputs, workdir / "model.onnx")
        serialized = self.build_engine(onnx_path, inputs, timing_cache_path(self.profile.name))
        write_atomic(workdir / "model.engine", lambda tmp: tmp.write_bytes(serialized))
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(serialized)
        return TensorRTRunner(engine, inputs)
