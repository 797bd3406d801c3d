"""Stage 5: the teacher, the exported students and hand-designed baselines on the device's runtime.

Every model is loaded on the device (checked against its PyTorch original), then all are timed
together, round-robin (timing.measure), on the same inputs with the same settings, so that a noisy
stretch of the machine hits them alike. The teacher is exported the way a user would deploy it
at ONNX Runtime's best: the plain export optimised by ONNX Runtime, and the export fused by its
transformer optimizer (optimum's engine); the faster of the two on this machine is the baseline.
Quality (evaluate.py) is measured against the teacher's sentence embeddings on the corpus's test
split and on out-of-domain sentences, neither ever read by training or search, by the deployed
artifact (ONNX Runtime for ONNX files). Beside the baselines sits the cheap peer (peer.py); on
ONNX Runtime devices every model is also quantised to int8 and scored (handmade.py). The report
marks each measure's Pareto front and chooses what to deploy at each budget (front.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from pipeline.artifacts import content_key, inside, short_hash, write_json_atomic
from pipeline.benchmark import baselines as bl
from pipeline.benchmark.evaluate import OOD_BATCH, OOD_TEXTS, EvalTexts, Model, evaluate
from pipeline.benchmark.front import decisions, mark_fronts
from pipeline.benchmark.handmade import int8_of, onnx_files, pkd_info, pkd_student, save_pkd_folder, teacher_depths
from pipeline.benchmark.measure import drift_of
from pipeline.benchmark.teacher import measure_models, pick_teacher, teacher_variants
from pipeline.devices import Backend
from pipeline.devices.timing import STATISTIC, Latency
from pipeline.errors import PipelineError
from pipeline.export import EXPORT, STUDENT_KEYS, read_export
from pipeline.finetune.builder import BuildConfig, StudentBuilder
from pipeline.finetune.distill import DistillConfig
from pipeline.latency import Predictor
from pipeline.model.hf import save_student
from pipeline.model.student import example_inputs
from pipeline.model.teacher import Encoder, weights_hash
from pipeline.model.texts import NEWS_SOURCE, news_sentences
from pipeline.space import count_flops, count_params
from pipeline.train.trained import TrainedSupernet

ANCHORS = 4  # calibration students re-timed with every benchmark (a few seconds more)
# What Bench.students reads of each exported student, checked with export.json before any work.
STUDENT_FIELDS = (*STUDENT_KEYS, "search", "describe", "params", "flops", "finetune", "artifacts", "onnx_path",
                  "onnx_plain_path")


class Bench:
    """Loads the teacher, the exported students and the baselines; measures them all together."""

    def __init__(self, export_dir: Path, backend: Backend, out: Path, predictor: Predictor | None,
                 progress: bool = False, log: Callable[[str], None] = print, int8: bool = True):
        self.export_dir, self.backend, self.out, self.predictor = Path(export_dir), backend, Path(out), predictor
        self.int8 = int8 and backend.runs_int8
        self.progress, self.log = progress, log
        path = self.export_dir / EXPORT
        self.export = read_export(self.export_dir, STUDENT_FIELDS)
        self.records = self.export["models"]
        for r in self.records:  # names become folders under OUT/work (measure_models, peak memory)
            inside(self.out / "work", r["name"], f"{path} model name")
        try:
            self.trained = TrainedSupernet(self.export["train_dir"])
        except (KeyError, TypeError) as e:
            raise PipelineError(f"{path} is corrupt ({type(e).__name__}); run `export` again") from None
        p = backend.profile
        self.seq = p.seq_lens[0]
        self.teacher = self.trained.teacher_model
        self.encoder = Encoder(self.teacher).eval()
        self.inputs = example_inputs(p.batch, self.seq, self.trained.frame.vocab_size)
        self.teacher_layers = self.teacher.config.num_hidden_layers

    # -- students ---------------------------------------------------------------------------------
    def students(self) -> list[Model]:
        from pipeline.model.hf import load_student

        models = []
        for r in self.records:
            student, _ = load_student(r["model_dir"], with_tokenizer=False)
            info = {"budget_ms": r["search"].get("budget_ms"), "predicted_ms": r["search"].get("predicted_ms"),
                    "arch": r["describe"], "params": r["params"], "flops": r["flops"],
                    "finetune_steps": r["finetune"]["steps"], "model_dir": r["model_dir"],
                    "onnx_path": r["onnx_path"]}
            onnx = {"onnxruntime": r["onnx_path"], "plain": r["onnx_plain_path"]}.get(self.backend.onnx)
            m = Model(r["name"], "searched", student, Path(onnx) if onnx else None, info=info)
            models.append(m)
            if self.int8:
                how = self.backend.int8
                done = [a for a in r["artifacts"] if a["kind"] == "onnx-int8" and a.get("settings") == how.describe()]
                if done:  # export wrote it with today's settings: the file a user deploys is the one timed
                    models.append(Model(f"{r['name']}-int8", "searched", student, Path(done[0]["path"]), "int8",
                                        info={**info, "predicted_ms": None, "onnx_path": done[0]["path"],
                                              "int8": how.describe()}))
                else:
                    models.append(int8_of(m, Path(r["onnx_plain_path"]), self.out / "int8" / f"{r['name']}.onnx", how))
        return models

    def baselines(self, searched: list[Model], teacher_ms: float) -> list[Model]:
        """PKD's student at every depth of the teacher, and a narrowed BERT of similar latency per searched
        student, distilled as many steps as the students were fine-tuned (handmade.py)."""
        steps = max((m.info["finetune_steps"] for m in searched), default=0)
        frame = next(m.module.arch for m in searched)
        cands = bl.narrow_candidates(frame, self.trained.hidden_sizes, self.trained.layers_per_block)
        predict = self.predictor if self.predictor is not None else (lambda a: count_flops(a) / 1e9)
        narrow: dict[str, bl.Baseline] = {}
        for m in searched:
            b = bl.pick_narrow(m.info["predicted_ms"] or teacher_ms / 4, cands, predict)
            narrow.setdefault(b.name, b)
        # The students' fine-tuning recipe, so the baselines learn the same way from the same text: where the
        # steps ran, the augmented views, the spans. Exports that predate a setting ran without it.
        ft = self.export.get("config", {}).get("finetune", {})
        known = {f.name for f in fields(DistillConfig)} - {"steps", "seed"}
        before = {"device": "auto", "views": 0, "span_rows": 0, "batch_size": 16}
        recipe = {k: tuple(v) if isinstance(v, list) else v for k, v in {**before, **ft}.items() if k in known}
        cfg = DistillConfig(steps=steps, **recipe)
        ex = StudentBuilder(self.trained, BuildConfig(finetune=cfg), self.progress, self.log)
        p = self.backend.profile
        models = []
        for k in teacher_depths(self.teacher):
            module, record = pkd_student(ex, self.teacher, k)
            folder = self.out / "baselines" / f"pkd_{k}"
            onnx, plain = onnx_files(module, self.inputs, folder, self.backend.onnx)
            info = {**pkd_info(module, self.teacher_layers, k, self.seq, p.batch),
                    "model_dir": str(save_pkd_folder(module, self.trained.tokenizer, folder / "model"))}
            models += self._finish(Model(f"pkd_{k}", "pkd", module, onnx, info=info), plain, record, ex.views)
        for b in narrow.values():
            module = bl.build_narrow(b, ex.embedding)
            record = ex.distil(module, f"distil {b.name}")
            folder = self.out / "baselines" / b.name
            onnx, plain = onnx_files(module, self.inputs, folder, self.backend.onnx)
            # Saved as a student folder, so that the task stage can teach it a task like the searched ones.
            save_student(module, folder / "model", self.trained.tokenizer)
            info = {"arch": b.arch.describe(), "params": count_params(b.arch),
                    "flops": count_flops(b.arch, self.seq, p.batch),
                    "predicted_ms": self.predictor(b.arch) if self.predictor else None,
                    "model_dir": str(folder / "model"), "matched_to_ms": b.target_ms}
            models += self._finish(Model(b.name, "narrow", module, onnx, info=info), plain, record, ex.views)
        return models

    def _finish(self, m: Model, plain: Path | None, record: dict[str, Any], views: int) -> list[Model]:
        """A baseline's record of its distillation, logged; with its int8 variant where int8 is on."""
        m.info.update(distill_steps=record["steps"], distill_views=views, distill_loss_last=record.get("loss_last"),
                      distill_reused=bool(record.get("reused")))
        self.log(f"baseline {m.name}: {m.info['arch']}, distilled {record['steps']} steps"
                 + (" (from the cache)" if record.get("reused") else ""))
        if not self.int8 or plain is None:
            return [m]
        return [m, int8_of(m, plain, plain.with_name("model.int8.onnx"), self.backend.int8)]

    def peer(self) -> Model:
        """model2vec distilled from the teacher (peer.py), cached by the teacher's weights."""
        from pipeline.benchmark.peer import PEER_NAME, RUNS_ON, load_peer

        static = load_peer(self.teacher.name_or_path, weights_hash(self.teacher), self.log)
        return Model(PEER_NAME, "peer", None, peer=static,
                     info={"arch": f"static token embeddings of the teacher ({static.embedding.shape[0]} x "
                                   f"{static.dim}), mean-pooled", "runs_on": RUNS_ON,
                           "params": int(static.embedding.size)})

    # -- measuring --------------------------------------------------------------------------------
    def measure(self, models: list[Model], rounds: int | None = None) -> list[Latency]:
        return measure_models(models, self.backend, self.inputs, self.out / "work", rounds, self.progress)

    def run(self, with_baselines: bool = True) -> dict[str, Any]:
        p = self.backend.profile
        self.log(f"exporting and optimising the teacher for {p.name} ...")
        variants = teacher_variants(self.teacher, self.backend, self.inputs, self.out / "teacher", self.log)
        teacher, teacher_ms, tried = pick_teacher(variants, self.measure)  # teacher.py
        teacher.info["source"] = self.trained.teacher
        searched = self.students()
        models = [teacher, *searched]
        if self.int8:  # the teacher's fused graph where the optimizer fused it: its MatMuls and Attention quantise
            fused = [v for v in variants if "transformer optimizer" in v.info.get("optimisation", "")]
            source = fused[0].onnx_path if fused else self.out / "teacher" / "teacher.onnx"
            models.insert(1, int8_of(teacher, source, self.out / "teacher" / "teacher.int8.onnx", self.backend.int8))
        if with_baselines:
            models += self.baselines([m for m in searched if m.precision is None], teacher_ms)
            models.append(self.peer())
        anchors = self.anchors()
        self.log(f"measuring {len(models)} models together on {p.name} ({p.rounds} rounds x {p.runs_per_round} "
                 f"runs, batch {p.batch}, seq {self.seq}), with {len(anchors)} of the table's calibration students ...")
        lats = self.measure(models + [m for m, _ in anchors])
        lats, anchor_lats = lats[:len(models)], lats[len(models):]
        drift = drift_of([lat.robust_ms for lat in anchor_lats], [ms for _, ms in anchors])
        data = self.trained.corpus
        self.log(f"measuring quality on the test split and on {OOD_TEXTS} sentences of the {NEWS_SOURCE} ...")
        texts = EvalTexts.make(self.encoder, self.trained.tokenizer, data.test, news_sentences(OOD_TEXTS, seed=0))
        rows = []
        for m, lat in zip(tqdm(models, desc="quality, memory", unit="model", disable=not self.progress), lats,
                          strict=True):
            quality = evaluate(m, texts)
            mem = None if m.module is None else self.backend.peak_memory_mb(m.module, self.inputs, self.out / "work"
                                                                            / f"mem-{m.name}", m.onnx_path)
            rows.append(_row(m, lat, quality, mem, p.batch, self.seq))
        teacher_row = rows[0]
        for row in rows:
            row["speedup"] = teacher_row["latency_ms_p50"] / row["latency_ms_p50"]
            row["speedup_min"] = teacher_row["latency_ms"] / row["latency_ms"]
            b = row.get("budget_ms")
            if b is not None:
                row["within_budget"] = row["latency_ms"] <= b
                row["budget_use"] = row["latency_ms"] / b
                if drift:
                    # The same measurement at the speed the machine had when it was profiled: a shared host
                    # that runs 14% slow for an hour should not read as a search that missed (seen here).
                    row["latency_ms_at_table_speed"] = row["latency_ms"] / drift["ratio"]
                    row["within_budget_at_table_speed"] = row["latency_ms_at_table_speed"] <= b
        budgets = sorted({r["budget_ms"] for r in rows if r.get("budget_ms") is not None})
        fronts = mark_fronts(rows)  # front.py: each row learns which fronts it is on
        return {
            "device": p.name, "backend": self.backend.name, "precision": p.precision,
            "fingerprint": self.backend.fingerprint(),
            "budget_ms": budgets[0] if len(budgets) == 1 else budgets, "budgets_ms": budgets,
            "batch": p.batch, "seq": self.seq, "statistic": STATISTIC,
            "fidelity_on": f"test split of {data.held_out_source}: {data.test.shape[0]} chunks of {data.test.shape[1]} "
                           "tokens",
            "out_of_domain_on": f"{len(texts.ood)} sentences of the {NEWS_SOURCE} ({texts.ood_words:.0f} words on "
                                f"average), padded in batches of {OOD_BATCH}",
            "teacher": {**teacher_row, "variants_tried": tried},
            "students": [r for r in rows if r["kind"] == "searched"],
            "baselines": [r for r in rows[1:] if r["kind"] in ("teacher", "narrow", "pkd")],
            "peers": [r for r in rows if r["kind"] == "peer"],
            "int8": self.backend.int8.describe() if self.int8 else None,
            "fronts": fronts, "decisions": decisions(rows, budgets),
            "machine_drift": drift,
            "export_dir": str(self.export_dir),
            "key": bench_key(self.export_dir, self.backend, with_baselines, self.int8),
        }

    def anchors(self, n: int = ANCHORS) -> list[tuple[Model, float]]:
        """Up to n of the latency table's calibration students (random weights) with their table latency:
        timed with the rest, they tell how far the machine has drifted since it was profiled."""
        if self.predictor is None:
            return []
        from pipeline.model.student import Student

        out = []
        for i, (arch, ms) in enumerate(self.predictor.table.calibration_rows(self.backend.profile.batch,
                                                                             self.seq)[:n]):
            torch.manual_seed(i)
            out.append((Model(f"anchor-{i}", "anchor", Student(arch).eval()), ms))
        return out


def _row(m: Model, lat, quality: dict[str, Any], mem: float | None, batch: int, seq: int) -> dict[str, Any]:
    info = dict(m.info)
    predicted = info.pop("predicted_ms", None)
    onnx = info.pop("onnx_path", None) or (str(m.onnx_path) if m.onnx_path else None)
    return {
        "name": m.name, "kind": m.kind, "precision": m.precision or "fp32", **info,
        "latency_ms": lat.robust_ms, "latency_ms_p50": lat.p50_ms, "latency_ms_p90": lat.p90_ms,
        "latency_ms_p99": lat.p99_ms, "latency_ms_mean": lat.mean_ms, "runs": lat.n,
        "throughput_seq_per_s": batch * 1000 / lat.p50_ms, "throughput_tokens_per_s": batch * seq * 1000 / lat.p50_ms,
        "predicted_ms": predicted,
        "prediction_error_pct": (predicted / lat.robust_ms - 1) * 100 if predicted else None,
        **quality, "peak_memory_mb": mem,
        "onnx_path": onnx,
    }


def bench_key(export_dir: Path, backend: Backend, with_baselines: bool, int8: bool = True) -> str:
    """What a report depends on: the exported students and the device (for `run`'s reuse). Version 4: PKD at
    every depth, int8 of every model, the fronts and the choice (3: the narrow baseline draws BERT's weights)."""
    blob = (Path(export_dir) / EXPORT).read_text() if (Path(export_dir) / EXPORT).is_file() else ""
    return content_key("benchmark", 4, export=short_hash(blob), device=backend.fingerprint(),
                       profile=repr(backend.profile), baselines=with_baselines,
                       int8=backend.int8.describe() if int8 and backend.runs_int8 else None)


def run_benchmark(export_dir: Path, backend: Backend, out: Path, predictor: Predictor | None,
                  with_baselines: bool = True, progress: bool = False,
                  log: Callable[[str], None] = print, int8: bool = True) -> dict[str, Any]:
    from pipeline.benchmark.report import write_report

    bench = Bench(export_dir, backend, out, predictor, progress, log, int8)  # checks its inputs before anything goes
    # The record (its key) goes before the files it describes change and comes back last: a benchmark killed
    # between leaves no report.json to reuse, never an older one beside a newer report.md.
    (Path(out) / "report.json").unlink(missing_ok=True)
    report = bench.run(with_baselines)
    write_report(report, out)
    write_json_atomic(out / "report.json", report)
    return report
