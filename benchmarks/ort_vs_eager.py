"""The exported students on ONNX Runtime against the same students in PyTorch eager, side by side.

    python benchmarks/ort_vs_eager.py --export-dir runs/cpu/export [--device cpu]

Both run on the CPU with the device profile's threads, batch and sequence, on the same inputs,
timed together round-robin (pipeline.devices.timing.measure), so that the ratio is measured in one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.devices.timing import STATISTIC, measure
from pipeline.model.hf import load_student
from pipeline.model.student import example_inputs


class EagerRunner:
    def __init__(self, module: torch.nn.Module, inputs: dict[str, torch.Tensor]):
        self.module, self.inputs = module.eval(), list(inputs.values())

    def timed_run(self) -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            self.module(*self.inputs)
            return (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export-dir", required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    profile = resolve_profile(args.device, None)
    backend = get_backend(profile)
    torch.set_num_threads(profile.resolved_threads)  # the same threads as the ONNX Runtime session
    records = json.loads((Path(args.export_dir) / "export.json").read_text())["models"]
    runs, names, runners = [], [], []
    for r in records:
        student, _ = load_student(r["model_dir"], with_tokenizer=False)
        inputs = example_inputs(profile.batch, profile.seq_lens[0], student.arch.vocab_size)
        ort = backend.load(student, inputs, Path(args.export_dir) / r["name"] / "device", what=r["name"],
                           onnx_path=Path(r["onnx_path"]))
        runners.append(ort)
        runs += [ort.timed_run, EagerRunner(student, inputs).timed_run]
        names.append(r["name"])
    lats = measure(runs, profile.warmup, profile.rounds, profile.runs_per_round, min_round_s=profile.min_round_s)
    print(f"{profile.name}: {profile.resolved_threads} thread(s), batch {profile.batch}, seq {profile.seq_lens[0]}; "
          f"latency = {STATISTIC} (p50 in brackets)")
    print(f"{'student':<16} {'ONNX Runtime ms':>20} {'PyTorch eager ms':>20} {'ratio':>7}")
    for i, name in enumerate(names):
        o, e = lats[2 * i], lats[2 * i + 1]
        print(f"{name:<16} {o.robust_ms:>9.3f} ({o.p50_ms:>7.3f}) {e.robust_ms:>9.3f} ({e.p50_ms:>7.3f}) "
              f"{e.robust_ms / o.robust_ms:>6.2f}x")
    for r in runners:
        r.close()


if __name__ == "__main__":
    main()
