"""Fidelity of one searched student against the number of end-to-end fine-tuning steps.

    python benchmarks/fidelity_curve.py --train-dir runs/cpu/train --arch runs/cpu/search/arch_3.5ms.json \
        --steps 0,500,2000,5000 [--finetune-device auto]

For each step count the student is assembled afresh from the supernet (as `export` does), fine-tuned
with the pipeline's DistillConfig for that many steps (its cosine schedule spans them), and scored on
the test split the way the benchmark scores it: cosine to the teacher of mean-pooled sentence
embeddings and of token states; and, for contrast, the sentence cosine on as many training chunks
(steps, not text, are short while the two stay close). The goal is 0.9 at a quarter of the
teacher's latency; this prints how far a given number of steps gets, and how long they took where
they ran (CUDA if present).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from pipeline.errors import PipelineError
from pipeline.finetune.builder import BuildConfig, StudentBuilder
from pipeline.finetune.distill import DEVICES, DistillConfig, fidelity, outputs
from pipeline.model.teacher import sample_chunks, teacher_states
from pipeline.space import load_architecture
from pipeline.train.trained import TrainedSupernet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", required=True, help="output folder of `train`")
    ap.add_argument("--arch", required=True, help="architecture JSON (a search result)")
    ap.add_argument("--steps", default="0,500,2000", help="comma-separated step counts")
    ap.add_argument("--finetune-device", choices=DEVICES, default="auto")
    ap.add_argument("--lr", type=float, default=DistillConfig.lr)
    ap.add_argument("--views", type=int, default=DistillConfig.views,
                    help="at most this many augmented views of the training text (0: the plain chunks only)")
    args = ap.parse_args()
    try:
        counts = [int(s) for s in args.steps.split(",")]
    except ValueError:
        raise SystemExit(f"error: --steps takes integers like 0,500,2000, got {args.steps!r}") from None
    try:
        trained = TrainedSupernet(args.train_dir)
        arch = load_architecture(args.arch)
    except PipelineError as e:
        raise SystemExit(f"error: {e}") from None

    teacher = trained.teacher_model
    # One builder for every count (one corpus load, one embedding fit, one set of targets, drawn for
    # the largest count); only its fine-tuning steps change between counts.
    cfg = BuildConfig(finetune=DistillConfig(steps=max(counts), lr=args.lr, views=args.views,
                                                device=args.finetune_device))
    ex = StudentBuilder(trained, cfg, progress=True, log=lambda _m: None)
    last = trained.summary["space"]["teacher_layers"]
    ref = teacher_states(teacher, ex.data.test, [last])[last]      # [N, S, T]
    # As many training chunks as test ones: their gap to the test split says whether more steps
    # (both low) or more text (training high, test low) would help.
    seen = sample_chunks(ex.data.train, ex.data.test.shape[0], seed=0)
    seen_ref = teacher_states(teacher, seen, [last])[last]
    rows = []
    for steps in counts:
        ex.cfg = replace(cfg, finetune=replace(cfg.finetune, steps=steps))
        t0 = time.perf_counter()
        student, record = ex.student(arch, f"{steps} steps")
        fid = fidelity(outputs(student, ex.data.test), ref)
        fid["seen"] = fidelity(outputs(student, seen), seen_ref)["sentence"]
        rows.append((steps, record.get("device", "-"), time.perf_counter() - t0, fid))
        print(f"{steps} steps: sentence {fid['sentence']:.4f}, token {fid['token']:.4f}, "
              f"training text {fid['seen']:.4f}", flush=True)

    print(f"\n{arch.describe()}, test split {tuple(ref.shape[:2])}, lr {args.lr}, "
          f"{ex.views} augmented views ({ex.train_ids.shape[0]} training chunks)\n")
    print("| steps | ran on | seconds | sentence cosine | token cosine | worst sentence | sentence, training text |")
    print("|---|---|---|---|---|---|---|")
    for steps, device, seconds, fid in rows:
        print(f"| {steps} | {device} | {seconds:.0f} | {fid['sentence']:.4f} | {fid['token']:.4f} "
              f"| {fid['sentence_min']:.4f} | {fid['seen']:.4f} |")


if __name__ == "__main__":
    main()
