"""Which dynamic int8 settings to ship: speed and quality of each, on the teacher and on a student.

    python benchmarks/int8_settings.py [--device cpu] [--export-dir runs/x/export] [--texts 1500]

Every variant of ONNX Runtime's dynamic quantisation (pipeline.onnxio.Int8Settings) is applied to the
teacher's fused graph and to each student's plain export (the exported ones, or, without --export-dir, a random-weight
student of the space, whose quality is then only its agreement with its own fp32 graph). All files
are timed together, round-robin, with the device profile's threads, batch and sequence; quality is the
agreement with the same model's fp32 graph on out-of-domain sentences (similarity spearman, recall@10).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from pipeline.benchmark.evaluate import Model, Outputs, _ood_embeddings
from pipeline.benchmark.measure import measure_runners
from pipeline.benchmark.quality import embedding_quality
from pipeline.benchmark.teacher import teacher_variants
from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.devices.host import cpu_model
from pipeline.devices.timing import STATISTIC
from pipeline.errors import ExportMismatch
from pipeline.model.hf import load_student
from pipeline.model.student import Student, example_inputs
from pipeline.model.teacher import Encoder, load_teacher, load_tokenizer
from pipeline.model.texts import news_sentences
from pipeline.onnxio import INT8, export_onnx, optimize_onnx, quantize_int8
from pipeline.space import SearchSpace

VARIANTS = {
    "qint8": INT8,
    "+conv": replace(INT8, op_types=(*INT8.op_types, "Conv")),
    "+gather": replace(INT8, op_types=(*INT8.op_types, "Gather", "EmbedLayerNormalization")),
    "qint8-per-tensor": replace(INT8, per_channel=False),
    "quint8": replace(INT8, weight_type="quint8"),
    "quint8-per-tensor": replace(INT8, weight_type="quint8", per_channel=False),
    "reduce-range": replace(INT8, reduce_range=True),
    "reduce-range-per-tensor": replace(INT8, reduce_range=True, per_channel=False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--export-dir", default=None)
    ap.add_argument("--texts", type=int, default=1500)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--teacher-only", action="store_true", help="no student without --export-dir")
    args = ap.parse_args()
    profile = resolve_profile(args.device, None)
    backend = get_backend(profile)
    teacher = load_teacher(None)
    tok = load_tokenizer(None)
    seq = profile.seq_lens[0]
    inputs = example_inputs(profile.batch, seq, teacher.config.vocab_size)
    work = Path(tempfile.mkdtemp(prefix="int8-settings-"))
    fused = [v for v in teacher_variants(teacher, backend, inputs, work / "teacher", print)
             if "transformer" in v.info.get("optimisation", "")]
    bases: list[tuple[str, torch.nn.Module, Path]] = [("teacher", Encoder(teacher).eval(), fused[0].onnx_path)]
    if args.export_dir:
        for r in json.loads((Path(args.export_dir) / "export.json").read_text())["models"]:
            if r.get("same_as"):
                continue
            student, _ = load_student(r["model_dir"], with_tokenizer=False)
            bases.append((r["name"], student.eval(), Path(r["onnx_plain_path"])))
    elif not args.teacher_only:
        space = SearchSpace.from_teacher(384, 6, teacher.config.vocab_size)
        torch.manual_seed(0)
        arch = space.sample(random.Random(3))
        student = Student(arch).eval()
        onnx = export_onnx(student, inputs, work / "student" / "model.onnx")
        bases.append((f"random {arch.describe()}", student, onnx))
        # The same student quantised from ONNX Runtime's optimised graph instead of the plain export.
        bases.append((f"random-opt {arch.describe()}", student, optimize_onnx(onnx, work / "student" / "opt.onnx")))
    wanted = args.variants.split(",")
    models: list[tuple[str, str, Model]] = []
    for name, module, onnx in bases:
        models.append((name, "fp32", Model(name, "x", module, onnx)))
        for v in wanted:
            q = quantize_int8(onnx, work / name.split()[0] / f"{v}.onnx", VARIANTS[v])
            models.append((name, v, Model(name, "x", module, q, "int8")))
    runners, kept = [], []
    for i, (name, v, m) in enumerate(models):
        try:
            runners.append(backend.load(m.module, inputs, work / f"run{i}", what=m.name, onnx_path=m.onnx_path,
                                        precision="int8-scored" if m.precision == "int8" else None))
        except ExportMismatch as e:  # a gross error: reported, not timed
            print(f"{name} {v}: {e}")
            continue
        kept.append((name, v, m))
    models = kept
    lats = measure_runners(runners, profile)
    texts = news_sentences(args.texts, seed=0)
    batches = []
    for i in range(0, len(texts), 32):
        enc = tok(texts[i:i + 32], padding=True, truncation=True, max_length=seq, return_tensors="pt")
        batches.append((enc["input_ids"], enc["attention_mask"]))
    ref: dict[str, torch.Tensor] = {}
    cpu = cpu_model()  # the one the latency tables record
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"{profile.name}: {profile.resolved_threads} thread(s), batch {profile.batch}, seq {seq}, {cpu}, "
          f"commit {commit}; latency = {STATISTIC}; quality against the same model's fp32 graph on "
          f"{len(texts)} news sentences")
    print("| model | int8 settings | ms | vs fp32 | spearman | recall@10 |\n|---|---|---|---|---|---|")
    base_ms: dict[str, float] = {}
    for (name, v, m), lat in zip(models, lats, strict=True):
        emb = _ood_embeddings(Outputs(m), batches)
        if v == "fp32":
            ref[name], base_ms[name] = emb, lat.robust_ms
        q = embedding_quality(emb, ref[name])
        print(f"| {name} | {v if v == 'fp32' else VARIANTS[v].describe()} | {lat.robust_ms:.3f} | "
              f"{base_ms[name] / lat.robust_ms:.2f}x | {q['similarity_spearman']:.3f} | "
              f"{q['neighbour_recall_at_10']:.3f} |")


if __name__ == "__main__":
    main()
