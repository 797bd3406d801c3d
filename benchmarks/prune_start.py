"""The teacher pruned as a student's start: which importance ranks heads and neurons best, what each
shape keeps with no training and after distillation, and what it costs on the device.

    python benchmarks/prune_start.py --train-dir runs/q/train [--latency] [--distil 200] [--out rows.json]

For every importance measure (pipeline.model.importance, plus a seeded random order as the control) and
every shape (`--shapes`: h heads / d neurons in each of the first k teacher layers, the rest dropped;
`h12/d1536x3` is PKD's three-layer student), the teacher pruned to that shape is scored against the
whole teacher (quality.py) on three texts no stage trains on: the corpus's validation chunks, 200
movie-review sentences ("dev", what a choice between measures reads) and the report's 1,500 Lee news
sentences (out of domain, only reported). Importance reads `--chunks` training chunks.
`--latency`: every shape exported, optimised as the teacher is (ONNX Runtime's transformer optimizer
where it fuses the graph, its graph optimisations otherwise) and quantised to int8, all timed together,
round-robin, with the device profile. `--distil N`: the best measure's shapes (and PKD's) distilled N
steps with the export's recipe (finetune/builder.py), then scored again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from pipeline.benchmark.evaluate import OOD_TEXTS, EvalTexts, Model, evaluate
from pipeline.devices.host import cpu_model
from pipeline.model.importance import METHODS, Importance, cached_importance, importance
from pipeline.model.pruned import Shape, pruned_teacher
from pipeline.model.teacher import Encoder, sample_chunks
from pipeline.model.texts import news_sentences, review_sentences

SHAPES = "h12/d1536x6,h12/d768x6,h12/d384x6,h6/d1536x6,h6/d768x6,h4/d512x6,h3/d384x6,h6/d768x3,h12/d1536x3,h12/d1536x2"


def parse_shape(text: str, layers: int) -> Shape:
    """`h6/d768x4` -> 6 heads and 768 neurons in each of the first 4 layers."""
    hd, _, k = text.partition("x")
    h, d = hd.split("/")
    return Shape.uniform(layers, int(h.lstrip("h")), int(d.lstrip("d")), int(k) if k else layers)


def random_importance(teacher, seed: int = 0) -> Importance:
    g = torch.Generator().manual_seed(seed)
    layer = teacher.encoder.layer[0]
    n = len(teacher.encoder.layer)
    return Importance("random", torch.rand(n, layer.attention.self.num_attention_heads, generator=g),
                      torch.rand(n, layer.intermediate.dense.out_features, generator=g))


def flops(teacher, shape: Shape, seq: int) -> int:
    """2 x multiply-adds of the pruned layers' matmuls at one sequence (embeddings excluded)."""
    hidden = teacher.config.hidden_size
    d = hidden // teacher.config.num_attention_heads
    total = 0
    for h, n in zip(shape.heads, shape.neurons, strict=True):
        total += 2 * seq * hidden * 4 * h * d + 2 * 2 * seq * seq * h * d + 2 * 2 * seq * hidden * n
    return total


def _scores(m: Model, texts: EvalTexts, dev: EvalTexts) -> dict[str, float]:
    a, b = evaluate(m, texts), evaluate(m, dev)
    return {"val_spearman": a["similarity_spearman"], "val_recall": a["neighbour_recall_at_10"],
            "dev_spearman": b["ood_similarity_spearman"], "dev_recall": b["ood_neighbour_recall_at_10"],
            "news_spearman": a["ood_similarity_spearman"], "news_recall": a["ood_neighbour_recall_at_10"]}


def _latencies(teacher, shapes: list[tuple[str, Shape]], imp: Importance) -> dict[str, dict[str, float]]:
    from pipeline.benchmark.measure import measure_runners
    from pipeline.benchmark.teacher import teacher_variants
    from pipeline.config import resolve_profile
    from pipeline.devices import get_backend
    from pipeline.errors import ExportMismatch
    from pipeline.model.student import example_inputs
    from pipeline.onnxio import INT8, quantize_int8

    profile = resolve_profile("cpu", None)
    backend = get_backend(profile)
    inputs = example_inputs(profile.batch, profile.seq_lens[0], teacher.config.vocab_size)
    work = Path(tempfile.mkdtemp(prefix="prune-start-"))
    models: list[tuple[str, str, Model]] = []
    runners = []
    for name, shape in [("teacher", None), *shapes]:
        module = Encoder(teacher if shape is None else pruned_teacher(teacher, shape, imp)).eval()
        folder = work / name.replace("/", "_")
        variants = teacher_variants(module.bert, backend, inputs, folder, print)
        # ONNX Runtime's transformer optimizer fuses attention for the teacher's head count: on pruned heads its
        # graph is wrong (max |diff| 2.04 on h6/d768x6), which the check against PyTorch refuses; then the
        # graph optimisations alone, as students are deployed.
        fused = [v for v in variants if "transformer" in v.info.get("optimisation", "")]
        for v in fused + [v for v in variants if v not in fused]:
            try:
                fp32 = backend.load(module, inputs, folder / "run-fp32", what=f"{name} fp32", onnx_path=v.onnx_path)
            except ExportMismatch as e:
                print(f"{name}: {v.info.get('optimisation')}: {e}")
                continue
            q = quantize_int8(v.onnx_path, folder / "int8.onnx", INT8)
            int8 = backend.load(module, inputs, folder / "run-int8", what=f"{name} int8", onnx_path=q,
                                precision="int8-scored")
            models += [(name, "fp32", Model(name, "x", module, v.onnx_path)),
                       (name, "int8", Model(name, "x", module, q))]
            runners += [fp32, int8]
            print(f"{name}: {v.info.get('optimisation')}")
            break
    lats = measure_runners(runners, profile)
    out: dict[str, dict[str, float]] = {}
    for (name, p, _), lat in zip(models, lats, strict=True):
        out.setdefault(name, {})[p] = lat.robust_ms
    return out


def main() -> None:
    from pipeline.finetune.builder import BuildConfig, StudentBuilder
    from pipeline.finetune.distill import DistillConfig
    from pipeline.train.trained import TrainedSupernet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", required=True, help="a trained supernet's folder: its teacher, corpus and tokenizer")
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--chunks", type=int, default=256, help="training chunks the importance measures read")
    ap.add_argument("--methods", default=",".join(("random", *METHODS)))
    ap.add_argument("--val", type=int, default=64, help="validation chunks scored (of 128 tokens)")
    ap.add_argument("--latency", action="store_true", help="time every shape in fp32 and int8 (a quiet machine)")
    ap.add_argument("--distil", type=int, default=0, help="distil the best measure's shapes this many steps")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    trained = TrainedSupernet(args.train_dir)
    teacher = trained.teacher_model.eval()
    tok, corpus = trained.tokenizer, trained.corpus
    layers, seq = teacher.config.num_hidden_layers, corpus.seq_len
    shapes = [(s, parse_shape(s, layers)) for s in args.shapes.split(",")]
    enc = Encoder(teacher).eval()
    texts = EvalTexts.make(enc, tok, corpus.validation[:args.val], news_sentences(OOD_TEXTS, seed=0))
    dev = EvalTexts.make(enc, tok, corpus.validation[:4], review_sentences())
    ids = sample_chunks(corpus.train, args.chunks, seed=0)
    imps: dict[str, Importance] = {}
    for method in filter(None, args.methods.split(",")):  # none: only --latency
        start = time.perf_counter()
        imps[method] = random_importance(teacher) if method == "random" else cached_importance(teacher, method, ids)
        print(f"importance {method}: {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    for name, shape in shapes:
        for method, imp in imps.items():
            if shape.heads[0] == teacher.config.num_attention_heads and shape.neurons[0] == \
                    teacher.encoder.layer[0].intermediate.dense.out_features and method != "magnitude":
                continue  # nothing pruned inside the layers: every measure gives the same model
            model = Encoder(pruned_teacher(teacher, shape, imp)).eval()
            row = {"shape": name, "method": method, "steps": 0, "gflops": flops(teacher, shape, seq) / 1e9,
                   "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                   **_scores(Model(name, "pruned", model), texts, dev)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    # Only shapes that prune inside layers tell the measures apart (a whole-layer shape is one model for all).
    inside = {r["shape"] for r in rows if r["method"] != "magnitude"}
    mean_dev = {m: sum(r["dev_spearman"] for r in rows if r["method"] == m and r["shape"] in inside)
                / max(1, len(inside)) for m in imps if m != "random"}
    best = max(mean_dev, key=mean_dev.get) if mean_dev else None
    print(f"mean dev spearman over the shapes pruned inside layers: {mean_dev}; best measure: {best}")
    if args.distil and best is not None:
        builder = StudentBuilder(trained, BuildConfig(finetune=DistillConfig(steps=args.distil)), progress=True)
        for name, shape in shapes:
            torch.manual_seed(0)
            model = Encoder(pruned_teacher(teacher, shape, imps[best])).eval()
            start = time.perf_counter()
            builder.distil(model, f"distil {name}")
            row = {"shape": name, "method": best, "steps": args.distil, "gflops": flops(teacher, shape, seq) / 1e9,
                   "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                   "distil_s": time.perf_counter() - start, **_scores(Model(name, "pruned", model), texts, dev)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:  # the rows first: timing is the last and longest part
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=1))
    # Latency does not depend on which heads and neurons are kept: the weights' magnitude picks them.
    lat = _latencies(teacher, shapes, importance(teacher, "magnitude")) if args.latency else {}
    cpu = cpu_model()  # the one the latency tables record
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"\n{cpu}, commit {commit}; importance from {ids.shape[0]} training chunks; "
          f"val = {args.val} validation chunks, dev = 200 movie-review sentences, "
          f"news = {OOD_TEXTS} Lee news sentences (OOD)\n")
    print("| shape | measure | steps | GFLOPs | params M | fp32 ms | int8 ms | val spearman | dev spearman / recall@10 "
          "| news spearman / recall@10 |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = lat.get(r["shape"], {})
        print(f"| {r['shape']} | {r['method']} | {r['steps']} | {r['gflops']:.2f} | {r['params_m']:.1f} | "
              f"{ms.get('fp32', float('nan')):.2f} | {ms.get('int8', float('nan')):.2f} | {r['val_spearman']:.3f} | "
              f"{r['dev_spearman']:.3f} / {r['dev_recall']:.3f} | {r['news_spearman']:.3f} / {r['news_recall']:.3f} |")
    if "teacher" in lat:
        print(f"| teacher | - | - | {flops(teacher, parse_shape('h12/d1536', layers), seq) / 1e9:.2f} | - | "
              f"{lat['teacher']['fp32']:.2f} | {lat['teacher']['int8']:.2f} | 1 | 1 | 1 |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "latency_ms": lat}, indent=1))


if __name__ == "__main__":
    main()
