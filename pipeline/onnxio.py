"""ONNX export with dynamic batch and sequence axes, and numerical checks against PyTorch."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.artifacts import write_atomic
from pipeline.errors import ExportMismatch, PipelineError

OPSET = 17  # LayerNormalization is a native op from 17; every ORT and TensorRT 10 reads it

# Tolerances of an artifact against the fp32 PyTorch model: |a - b| <= atol + rtol * max|ref|.
# int8 dynamic quantisation rounds every weight to 1/255 of its row's range: it is checked for
# gross errors only here, and its real cost is the fidelity the benchmark measures.
TOLERANCE = {"fp32": (1e-4, 1e-4), "fp16": (1e-2, 1e-2), "int8": (0.0, 0.25),
             # an int8 file the report scores: its quality is the measure, so only a broken graph (a wrong
             # shape, a non-finite output) is refused (the default teacher in int8 ran at 1.01x the limit above)
             "int8-scored": (math.inf, 0.0)}


def export_onnx(module: nn.Module, inputs: dict[str, torch.Tensor], path: str | Path,
                output_name: str = "last_hidden_state") -> Path:
    """Export `module(**inputs)` with every input's and the output's dims 0, 1 dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "sequence"}
    dynamic = {name: axes for name in [*inputs, output_name]}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: 0.1 s a model against ~2 s for dynamo, and profiling exports dozens.
            torch.onnx.export(
                module.eval(), tuple(inputs.values()), str(tmp), input_names=list(inputs),
                output_names=[output_name], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
            )

    return write_atomic(path, write)  # a killed export leaves the old file or none, never half a graph


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def check_close(got: np.ndarray, ref: np.ndarray, precision: str, what: str) -> float:
    """Raise ExportMismatch unless got matches ref within the precision's tolerance; return the diff."""
    if got.shape != ref.shape:
        raise ExportMismatch(f"{what}: output shape {got.shape} differs from PyTorch's {ref.shape}")
    atol, rtol = TOLERANCE[precision]
    diff = max_abs_diff(got, ref)
    limit = atol + rtol * float(np.max(np.abs(ref)))
    if not np.isfinite(diff) or diff > limit:
        raise ExportMismatch(f"{what}: max |diff| {diff:.3g} against PyTorch exceeds {limit:.3g} ({precision})")
    return diff


def ort_session_of(path: str | Path, options=None, providers: tuple[str, ...] = ("CPUExecutionProvider",)):
    """An ONNX Runtime session of `path`; a file that is not a loadable model is a one-line PipelineError."""
    import onnxruntime as ort

    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...) are not exported
        if not Path(path).is_file():
            raise PipelineError(f"ONNX model not found: {path}; run `export` again") from None
        why = str(e).splitlines()[0].split(" : ")[-1][:160]
        raise PipelineError(f"{path} is not a loadable ONNX model ({why}); export it again (`export --force`)") \
            from None


def ort_session(path: Path) -> Callable[[dict[str, torch.Tensor]], np.ndarray]:
    """An ONNX file on ONNX Runtime CPU (whatever the device), default settings: inputs -> output."""
    session = ort_session_of(path)
    names = {i.name for i in session.get_inputs()}  # export drops inputs a graph does not use
    return lambda inputs: session.run(None, {k: v.numpy() for k, v in inputs.items() if k in names})[0]


def ort_outputs(path: Path, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """Run an ONNX file once on ONNX Runtime CPU."""
    return ort_session(path)(inputs)


def optimize_onnx(src: Path, dst: Path) -> Path:
    """ONNX Runtime's graph optimisations applied offline and saved (constant folding, fusions of
    LayerNorm, GELU, MatMul+Add...). The portable 'extended' level: 'all' adds layout changes that
    tie the file to this CPU; sessions still apply 'all' when they load it."""
    import onnxruntime as ort

    dst.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp)
        so.log_severity_level = 3
        ort_session_of(src, so)

    return write_atomic(dst, write)


def optimize_bert(src: Path, dst: Path, num_heads: int, hidden_size: int) -> tuple[Path, dict[str, int]]:
    """ONNX Runtime's transformer optimizer (the engine under optimum's ORTOptimizer) for a
    Hugging Face BERT: fused Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu.
    Returns the file and the count of each fused operator."""
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=1)  # 1 = the fusions; 99 adds the CPU-specific layout of ORT_ENABLE_ALL
    fused = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    write_atomic(dst, lambda tmp: model.save_model_to_file(str(tmp)))
    return dst, fused


@dataclass(frozen=True)
class Int8Settings:
    """How ONNX Runtime's dynamic quantisation is applied (benchmarks/int8_settings.py measures the choices)."""

    # MatMul (and the teacher's fused Attention) carry the dense layers' weights, where int8 pays; ConvInteger
    # has no fast kernel in ONNX Runtime's CPU provider, so a (depthwise) convolution stays fp32, and the
    # embedding Gather is a lookup that int8 does not speed up but does blur.
    op_types: tuple[str, ...] = ("MatMul", "Attention")
    weight_type: str = "qint8"     # signed weights: ONNX Runtime's own default for dynamic quantisation
    # One scale per output column: the default teacher kept similarity spearman 0.990 against 0.955 per
    # tensor, at the same speed (benchmarks/int8_settings.py, 2-vCPU EPYC, 1 thread).
    per_channel: bool = True
    reduce_range: bool = False     # 7-bit weights: only for CPUs whose int8 dot product saturates (int8_for)

    def describe(self) -> str:
        return (f"dynamic int8 ({self.weight_type} weights, {'per channel' if self.per_channel else 'per tensor'}"
                f"{', reduced range' if self.reduce_range else ''}) of {', '.join(self.op_types)}")


INT8 = Int8Settings()
# x86 without VNNI multiplies u8 activations by s8 weights with vpmaddubsw, whose int16 pair sums saturate
# when weights use their whole range (as per-channel scales make them do): a tiny student's int8 graph
# was off by 0.92 of a 3.57 output there, 0.27 with 7-bit weights (ONNX Runtime's documented remedy).
INT8_SATURATING = Int8Settings(reduce_range=True)
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products that accumulate in 32 bits


def int8_for(isa: str) -> Int8Settings:
    """The settings for a CPU, by its instruction sets as devices/host.py lists them (space-separated)."""
    flags = set(isa.split())
    saturates = "avx2" in flags and not flags & set(VNNI)
    return INT8_SATURATING if saturates else INT8


def quantize_int8(src: Path, dst: Path, settings: Int8Settings = INT8) -> Path:
    """Dynamic int8 quantisation of the weights of the settings' op types (activations quantised at run time).

    Without ONNX Runtime's quantisation pre-processing (quant_pre_process), although the quantiser
    logs a request for it: measured side by side on two searched students (1 thread, batch 1,
    seq 128), pre-processed int8 files ran 4.89 and 6.52 ms against 3.59 and 5.29 ms without."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weights = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[settings.weight_type]

    def write(tmp: Path) -> None:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the pre-processing request above, once per file
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(str(src), str(tmp), weight_type=weights, per_channel=settings.per_channel,
                                 reduce_range=settings.reduce_range, op_types_to_quantize=list(settings.op_types),
                                 # the fused teacher's com.microsoft ops escape shape inference: their outputs
                                 # are fp32, and the quantiser stops without being told so
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.setLevel(level)

    return write_atomic(dst, write)
