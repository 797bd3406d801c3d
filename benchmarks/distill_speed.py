"""Steps per CPU-second of export distillation: each way of running the steps against the plain loop.

    python benchmarks/distill_speed.py --train-dir runs/cpu/train --arch runs/cpu/search/arch_10.73ms.json \
        [--steps 20] [--rounds 4] [--variants 'plain,fused AdamW,...'] [--bf16-check auto|on|off] \
        [--compile] [--device cpu|gpu]

Two real students: the searched one of --arch (assembled from the supernet, as `export` does) and the
narrow BERT of the benchmark's baselines with about its FLOPs. For each, every variant of
distill.Loop (the plain loop of before, cached span labels, length buckets, fused AdamW, all of them
with the host's precision) runs --steps export steps on a copy of the same start, the variants
interleaved round after round in this one process, the first round a warm-up (it also labels the
spans once). A variant's rate is steps per CPU-second of this process (and per wall second);
speed-ups are medians of per-round ratios to the plain loop of the same round.

On --device gpu (benchmarks/device_check.sh) the steps run on CUDA and the rates are steps per wall second
(synchronised: the model comes back to the CPU at the end of every call); the contention check is off.

A run is rejected (exit 1, the table still printed) when a variant's rates spread by more than 10%
over the rounds, or when other processes took more than --max-others cores on average while it ran
(/proc/stat's busy time less this process's): on a shared 2-core host its numbers are not its own.

Checks, on the searched student: every exact variant (fp32) ends 20 steps within 0.5% of how far the
plain loop moved the weights (norm of the difference; Adam turns rounding into lr-sized steps on
near-zero gradients, so not bit for bit), except cached labels, whose targets are the teacher's
states rounded to fp16: within 3% of the weights' move and 0.5% of the plain loop's loss; and, where
bf16 runs (native by default, --bf16-check on to force it on a CPU that emulates it, slowly), bf16's
loss after 200 steps within 2% of fp32's.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

from pipeline.benchmark import baselines as bl
from pipeline.compute import bf16_native, compute_device
from pipeline.devices.host import cpu_fingerprint
from pipeline.errors import PipelineError
from pipeline.finetune import labels
from pipeline.finetune.assemble import assemble
from pipeline.finetune.builder import BuildConfig, StudentBuilder
from pipeline.finetune.distill import LOOP, PLAIN, DistillConfig, Loop, distill
from pipeline.space import count_flops, load_architecture
from pipeline.train.trained import TrainedSupernet

VARIANTS = {
    "plain": PLAIN,
    "cached labels": replace(PLAIN, cached_labels=True),
    "buckets": replace(PLAIN, buckets=2),
    "fused AdamW": replace(PLAIN, fused=True),
    "all (default)": LOOP,
}
EXACT = [name for name, loop in VARIANTS.items() if loop.precision == "fp32" and name != "plain"]
SPREAD = 0.10  # the most a variant's rate may vary over the rounds before the run is rejected


def busy_jiffies() -> int:
    """CPU time every process of the host has used (/proc/stat, in clock ticks); 0 where unreadable."""
    try:
        user, nice, system, _idle, _iowait, irq, softirq, *rest = map(int, open("/proc/stat").readline().split()[1:])
    except (OSError, ValueError):
        return 0
    return user + nice + system + irq + softirq + (rest[0] if rest else 0)  # steal: taken by the hypervisor


def timed(fn) -> tuple[float, float, float]:
    """(wall s, this process's CPU s, other processes' CPU s) of fn()."""
    hz = os.sysconf("SC_CLK_TCK")
    j0, c0, w0 = busy_jiffies(), time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return wall, cpu, max(0.0, (busy_jiffies() - j0) / hz - cpu)


def params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def measure(name: str, start: torch.nn.Module, ex: StudentBuilder, cfg: DistillConfig, rounds: int,
            variants: dict[str, Loop | str], clock: int) -> dict[str, list[tuple[float, float, float]]]:
    """Every variant's (wall, cpu, others) per measured round, interleaved (order rotated every round)."""
    names = list(variants)
    runs: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
    for r in range(rounds + 1):
        for v in names[r % len(names):] + names[:r % len(names)]:
            model = copy.deepcopy(start)
            loop = variants[v]
            if loop == "compile":
                model, loop = torch.compile(model, dynamic=True), LOOP
            t = timed(lambda model=model, loop=loop: distill(model, ex.train_ids, ex.targets, cfg, spans=ex.spans,
                                                             loop=loop))
            if r == 0:
                print(f"  {name} {v}: warm-up {t[0]:.1f} s", flush=True)
            else:
                runs[v].append(t)
        if r:
            print(f"  {name} round {r}/{rounds}: " + ", ".join(f"{v} {cfg.steps / runs[v][-1][clock]:.2f}"
                                                               for v in names)
                  + f" steps/{'CPU' if clock else 'wall'}-s", flush=True)
    return runs


def exactness(start: torch.nn.Module, ex: StudentBuilder, cfg: DistillConfig) -> dict[str, tuple[float, float]]:
    """Each exact variant after cfg.steps: (distance to the plain loop's weights / how far those moved, its
    last loss / the plain loop's - 1)."""
    plain = copy.deepcopy(start)
    ref = distill(plain, ex.train_ids, ex.targets, cfg, spans=ex.spans, loop=PLAIN)["loss_last"]
    moved = (params(plain) - params(start)).norm()
    out = {}
    for v in EXACT:
        model = copy.deepcopy(start)
        loss = distill(model, ex.train_ids, ex.targets, cfg, spans=ex.spans, loop=VARIANTS[v])["loss_last"]
        out[v] = (float((params(model) - params(plain)).norm() / moved), loss / ref - 1)
    return out


def parts(start: torch.nn.Module, ex: StudentBuilder, cfg: DistillConfig, loops: dict[str, Loop]
          ) -> dict[str, dict[str, float]]:
    """Where a step's time goes under each loop: CPU seconds per step of each part distill names
    (torch.profiler over one warm call; the profiler's own overhead inflates every part alike)."""
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for name, loop in loops.items():
        distill(copy.deepcopy(start), ex.train_ids, ex.targets, cfg, spans=ex.spans, loop=loop)  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            distill(copy.deepcopy(start), ex.train_ids, ex.targets, cfg, spans=ex.spans, loop=loop)
        out[name] = {e.key.removeprefix("distill."): e.cpu_time_total / 1e6 / cfg.steps
                     for e in prof.key_averages() if e.key.startswith("distill.")}
    return out


def bf16_losses(start: torch.nn.Module, ex: StudentBuilder, cfg: DistillConfig) -> tuple[float, float]:
    """The last tenth's mean loss of the default loop in fp32 and in bf16."""
    def loss(precision: str) -> float:
        loop = replace(LOOP, precision=precision)
        return distill(copy.deepcopy(start), ex.train_ids, ex.targets, cfg, spans=ex.spans, loop=loop)["loss_last"]

    return loss("fp32"), loss("bf16")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", required=True, help="output folder of `train`")
    ap.add_argument("--arch", required=True, help="architecture JSON of a searched student (a search result)")
    ap.add_argument("--steps", type=int, default=20, help="export steps per timed call (default: 20)")
    ap.add_argument("--rounds", type=int, default=4, help="measured rounds after the warm-up (default: 4)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"which loops to time, plain always among them (default: all: {', '.join(VARIANTS)})")
    ap.add_argument("--check-steps", type=int, default=20, help="steps of the exactness check (default: 20)")
    ap.add_argument("--bf16-check", choices=("auto", "on", "off"), default="auto",
                    help="bf16 against fp32 after 200 steps: auto where the CPU has bf16 arithmetic")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the student (and its "
                                                           "compile time)")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="where the steps run (default: cpu); on gpu the rates are per wall second")
    ap.add_argument("--parts", action="store_true",
                    help="only profile where a step's time goes, part by part, plain loop against the default")
    ap.add_argument("--max-others", type=float, default=0.15,
                    help="cores other processes may use on average before the run is rejected (default: 0.15)")
    args = ap.parse_args()
    if args.steps < 1 or args.rounds < 2 or args.check_steps < 1:
        print("error: --steps and --check-steps must be at least 1, --rounds at least 2", file=sys.stderr)
        return 2
    try:
        trained = TrainedSupernet(args.train_dir)
        arch = load_architecture(args.arch)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = DistillConfig(steps=args.steps, device=args.device)
    clock = 1 if args.device == "cpu" else 0  # which of timed()'s seconds a rate divides by: CPU or wall
    ex = StudentBuilder(trained, BuildConfig(finetune=replace(cfg, steps=200)), log=lambda _m: None)
    seq = trained.seq_len
    cands = bl.narrow_candidates(arch, trained.hidden_sizes, trained.layers_per_block)
    narrow = bl.pick_narrow(count_flops(arch, seq, 1), cands, lambda a: count_flops(a, seq, 1))
    students = {"searched": assemble(arch, trained, ex.embedding),
                narrow.name: bl.build_narrow(narrow, ex.embedding)}
    picked = ["plain"] + [v for v in args.variants.split(",") if v != "plain"]
    unknown = [v for v in picked if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    variants: dict[str, Loop | str] = {v: VARIANTS[v] for v in picked}
    if args.compile:
        variants["all + torch.compile"] = "compile"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    fp = cpu_fingerprint()
    print(f"commit {commit or '?'}; {fp['cpu']} ({fp['cpu_id']}), isa: {fp['isa']}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; bf16 native: {bf16_native(compute_device(args.device))}")
    print(f"searched: {arch.describe()}\n{narrow.name}: {narrow.arch.describe()}")
    print(f"{args.steps} steps a call, {args.rounds} rounds after a warm-up; batch {cfg.batch_size} chunks of {seq} "
          f"+ {cfg.span_rows} spans of {cfg.span_tokens[0]}-{cfg.span_tokens[1]} tokens", flush=True)

    if args.parts:
        for name, student in students.items():
            found = parts(student, ex, cfg, {"plain": PLAIN, "default": LOOP})
            names = list(dict.fromkeys(k for v in found.values() for k in v))
            print(f"\n{name}: ms per step in each part (the profiler's time of the calling thread), "
                  f"{args.steps} steps\n")
            print("| part | " + " | ".join(found) + " |")
            print("|---|" + "---|" * len(found))
            for part in names + ["total"]:
                print(f"| {part} | " + " | ".join(
                    f"{1000 * (sum(v.values()) if part == 'total' else v.get(part, 0.0)):.0f}" for v in found.values())
                    + " |")
        return 0

    # The one-off cost that cached labels move out of the steps: one block of spans, labelled afresh.
    g = torch.Generator().manual_seed(99)
    plan = torch.stack([ex.spans.draw(cfg.span_rows, g) for _ in range(labels.SHARD_STEPS)])
    store = labels.SpanLabels(ex.spans, plan, {"fresh": time.time()}, compute_device(args.device))
    label_s = timed(lambda: store._label(plan))[0]

    rejected, table = [], []
    for name, student in students.items():
        runs = measure(name, student, ex, cfg, args.rounds, variants, clock)
        others = sum(t[2] for v in runs.values() for t in v) / sum(t[0] for v in runs.values() for t in v)
        if clock and others > args.max_others:
            rejected.append(f"{name}: other processes used {others:.2f} cores on average")
        for v, ts in runs.items():
            rates = [args.steps / t[clock] for t in ts]
            spread = (max(rates) - min(rates)) / statistics.median(rates)
            if spread > SPREAD:
                rejected.append(f"{name} {v}: rates spread {spread:.0%} over the rounds")
            ratio = statistics.median(p[1] / t[1] for p, t in zip(runs["plain"], ts, strict=True))
            wall = statistics.median(p[0] / t[0] for p, t in zip(runs["plain"], ts, strict=True))
            table.append((name, v, statistics.median(rates), statistics.median(args.steps / w for w, _, _ in ts),
                          ratio, wall, spread, statistics.median(c / w for w, c, _ in ts)))

    print(f"\nlabelling one block of {labels.SHARD_STEPS} steps' spans: {label_s:.1f} s wall, once for every model "
          "distilled with the same teacher, text, seed and recipe")
    print("\n| student | loop | steps / CPU-s | steps / wall-s | x plain (CPU) | x plain (wall) | spread "
          "| CPU-s / wall-s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, v, rate, wrate, ratio, wall, spread, cores in table:
        print(f"| {name} | {v} | {rate:.3f} | {wrate:.3f} | {ratio:.2f}x | {wall:.2f}x | {spread:.0%} | {cores:.2f} |")

    start = students["searched"]
    close = exactness(start, ex, replace(cfg, steps=args.check_steps))
    print(f"\nafter {args.check_steps} steps, distance to the plain loop's weights / how far they moved (loss "
          "against the plain loop's): " + ", ".join(f"{v} {d:.2%} ({dl:+.3%})" for v, (d, dl) in close.items()))
    limits = {v: (0.03, 0.005) if VARIANTS[v].cached_labels else (0.005, 0.005) for v in close}
    failed = [v for v, (d, dl) in close.items() if d > limits[v][0] or abs(dl) > limits[v][1]]
    bf16 = args.bf16_check == "on" or (args.bf16_check == "auto" and bf16_native(compute_device(args.device)))
    if bf16:
        fp32_loss, bf16_loss = bf16_losses(start, ex, replace(cfg, steps=200))
        print(f"after 200 steps: loss fp32 {fp32_loss:.4f}, bf16 {bf16_loss:.4f} ({bf16_loss / fp32_loss - 1:+.2%})")
        if abs(bf16_loss / fp32_loss - 1) > 0.02:
            failed.append("bf16")
    else:
        print("bf16 not checked: this CPU has no bf16 arithmetic (the default loop runs fp32 here); "
              "--bf16-check on forces it")
    for line in rejected:
        print(f"REJECTED: {line}")
    for v in failed:
        print(f"FAILED: {v} does not learn what the plain loop learns")
    return 1 if rejected or failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
