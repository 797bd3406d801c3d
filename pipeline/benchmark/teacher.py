"""The teacher as a user would deploy it on the device, and its measured latency.

The benchmark times it beside the students (job.py). `run` and `search` time it alone, earlier,
when a budget is written as a speed-up over the teacher (`--budget 4x`, budget.py): the budget is
then the teacher's latency on this device divided by the speed-up. That measurement is kept in the
output folder, keyed by the teacher's weights and the device, so that running the same command
again resolves the same budget (and reuses the search) instead of a new, noisy one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from pipeline.artifacts import content_key, reusable, write_json_atomic
from pipeline.benchmark.evaluate import Model
from pipeline.benchmark.measure import measure_runners
from pipeline.devices import Backend
from pipeline.devices.timing import Latency
from pipeline.model.teacher import Encoder, load_teacher, weights_hash
from pipeline.onnxio import export_onnx, optimize_bert, optimize_onnx

TEACHER_LATENCY = "teacher_latency.json"
# Rounds of the short interleaved measurement that picks the fastest deployment of the teacher: enough
# to order two variants that differ by 10%, far fewer than the report's full measurement.
PICK_ROUNDS = 8


def teacher_variants(teacher: torch.nn.Module, backend: Backend, inputs: dict[str, torch.Tensor], folder: Path,
                     log: Callable[[str], None] = print) -> list[Model]:
    """The teacher as deployed: for backends that run ONNX, its optimised exports (files in folder)."""
    encoder = Encoder(teacher).eval()
    base = {"kind": "teacher", "params": sum(p.numel() for p in teacher.parameters())}
    if backend.onnx is None:
        return [Model("teacher", "teacher", encoder, info=base)]
    plain = export_onnx(encoder, inputs, folder / "teacher.onnx")
    if backend.onnx == "plain":  # the runtime fuses on its own (TensorRT)
        return [Model("teacher", "teacher", encoder, plain, info={**base, "optimisation": backend.name})]
    variants = [Model("teacher", "teacher", encoder, optimize_onnx(plain, folder / "teacher.opt.onnx"),
                      info={**base, "optimisation": "onnxruntime graph optimisations (extended offline, all "
                                                    "at load)"})]
    try:
        # The transformer optimizer recognises BERT's eager attention, not the SDPA export.
        eager = load_teacher(teacher.name_or_path, attention="eager")
        raw = export_onnx(Encoder(eager), inputs, folder / "teacher.eager.onnx")
        c = teacher.config
        fused_path, fused = optimize_bert(raw, folder / "teacher.fused.onnx", c.num_attention_heads, c.hidden_size)
        variants.append(Model("teacher", "teacher", encoder, fused_path,
                              info={**base, "optimisation": f"onnxruntime transformer optimizer: {fused}"}))
    except Exception as e:  # an optimizer that cannot fuse this BERT leaves the plain baseline
        log(f"note: the transformer optimizer failed on the teacher ({type(e).__name__}: {e}); "
            "using the plain optimised export")
    return variants


def measure_models(models: list[Model], backend: Backend, inputs: dict[str, torch.Tensor], work: Path,
                   rounds: int | None = None, progress: bool = False) -> list[Latency]:
    """Load every model on the device (checked against its PyTorch original; the max |diff| goes into
    its info) and time them together, round-robin (measure.py)."""
    from pipeline.benchmark.peer import PeerRunner

    p = backend.profile
    seq = inputs["input_ids"].shape[1]
    with ExitStack() as stack:
        runners = []
        for i, m in enumerate(models):
            if m.peer is not None:  # numpy on the host, whatever the device (peer.py)
                runners.append(PeerRunner(m.peer, p.batch, seq))
                continue
            r = backend.load(m.module, inputs, work / f"{i}-{m.name}", what=m.name, onnx_path=m.onnx_path,
                             # an int8 file is scored by the report, not refused by a tolerance (onnxio)
                             precision="int8-scored" if m.precision == "int8" else m.precision)
            m.info["device_max_abs_diff"] = r.max_abs_diff
            runners.append(stack.enter_context(r))
        return measure_runners(runners, p, rounds, progress)


def pick_teacher(variants: list[Model], measure: Callable[[list[Model], int], list[Latency]]
                 ) -> tuple[Model, float, list[dict[str, Any]]]:
    """The fastest teacher variant on a short interleaved measurement: (it, its ms, all tried)."""
    if len(variants) == 1:
        return variants[0], measure(variants, 5)[0].robust_ms, []
    lats = measure(variants, PICK_ROUNDS)
    tried = [{"optimisation": v.info["optimisation"], "onnx_path": str(v.onnx_path), "latency_ms": lat.robust_ms}
             for v, lat in zip(variants, lats, strict=True)]
    best = min(range(len(variants)), key=lambda i: lats[i].robust_ms)
    return variants[best], lats[best].robust_ms, tried


def teacher_latency(teacher: torch.nn.Module, backend: Backend, out: Path, progress: bool = False,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """The deployed teacher's latency on the device (ms, the table's statistic) as a record kept in
    out/teacher_latency.json, measured only when no record of the same teacher and device is there."""
    from pipeline.model.student import example_inputs

    p = backend.profile
    seq = p.seq_lens[0]
    key = content_key("teacher-latency", 1, teacher=weights_hash(teacher), device=backend.fingerprint(),
                      profile=repr(p), seq=seq)
    record = Path(out) / TEACHER_LATENCY
    found = reusable(record, key)
    if found is not None:
        return found
    log(f"timing the teacher on {p.name} (batch {p.batch}, seq {seq}) to turn speed-up budgets into milliseconds ...")
    inputs = example_inputs(p.batch, seq, teacher.config.vocab_size)
    folder = Path(out) / "teacher"
    variants = teacher_variants(teacher, backend, inputs, folder, log)
    best, _, tried = pick_teacher(variants, lambda ms, n: measure_models(ms, backend, inputs, folder / "work", n,
                                                                          progress))
    # The pick's short measurement orders the variants; the latency a budget divides is measured with the
    # profile's full protocol, as the report's is.
    lat = measure_models([best], backend, inputs, folder / "work", progress=progress)[0]
    result = {"key": key, "device": p.name, "latency_ms": lat.robust_ms, "latency_ms_p50": lat.p50_ms,
              "optimisation": best.info.get("optimisation"), "variants_tried": tried,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomic(record, result)
    return result
