"""The factorised embeddings' rank E: what it caps, and what a fine-tuned student keeps, out of domain.

    python benchmarks/embedding_rank.py --train-dir runs/full/train \
        --arch runs/full/export/arch_7.5ms/export.json --ranks 128,256,384 --steps 600

A student's embeddings are a vocab x E table and a projection E -> teacher width (assemble.py), fitted
to the teacher's embedding output on the training text. For each E:
- the cap: the teacher's own layers on top of the rank-E embeddings (what no student can beat);
- the student: the architecture assembled from the trained supernet with the rank-E embeddings and
  fine-tuned `--steps` steps with the default recipe (DistillConfig), the same seed for every E.
Both are scored against the teacher (quality.py) on the corpus's test chunks, on 200 movie-review
sentences (gensim's pang_lee_polarity.cor: "dev") and on the report's 1,500 Lee news sentences.
No timing: the latency cost of E is the latency table's (embedding lookup and first adapter).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch import nn

from pipeline.benchmark.evaluate import OOD_TEXTS, EvalTexts, Model, evaluate
from pipeline.finetune.assemble import assemble, fitted_embedding
from pipeline.finetune.builder import BuildConfig, StudentBuilder
from pipeline.finetune.distill import DistillConfig
from pipeline.model.teacher import Encoder
from pipeline.model.texts import REVIEWS_FILE, news_sentences, review_sentences
from pipeline.space import Architecture, architecture_from_dict
from pipeline.train.trained import TrainedSupernet


class RankEmbedding(nn.Module):
    """Stands in for a BertModel's embeddings module: the teacher's layers read the rank-E table."""

    def __init__(self, f: nn.Module):
        super().__init__()
        self.f = f

    def forward(self, input_ids: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        return self.f(input_ids)


def scores(m: Model, texts: EvalTexts, dev: EvalTexts) -> dict[str, float]:
    a, b = evaluate(m, texts), evaluate(m, dev)
    keys = ("fidelity_cosine", "similarity_spearman", "neighbour_recall_at_10")
    return {**{f"test_{k}": a[k] for k in keys}, **{f"news_{k}": a[f"ood_{k}"] for k in keys},
            **{f"dev_{k}": b[f"ood_{k}"] for k in keys}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", required=True)
    ap.add_argument("--arch", required=True,
                    help="an export.json (the stage's: its first model; or a student's) or an architecture JSON")
    ap.add_argument("--ranks", default="128,256,384")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    trained = TrainedSupernet(args.train_dir)
    spec = json.loads(Path(args.arch).read_text())
    arch = architecture_from_dict(spec["models"][0]["arch"] if "models" in spec else spec.get("arch", spec), args.arch)
    teacher = trained.teacher_model.eval()
    enc = Encoder(teacher).eval()
    texts = EvalTexts.make(enc, trained.tokenizer, trained.corpus.test, news_sentences(OOD_TEXTS, seed=0))
    dev = EvalTexts.make(enc, trained.tokenizer, trained.corpus.test[:4], review_sentences())
    builder = StudentBuilder(trained, BuildConfig(finetune=DistillConfig(steps=args.steps)), progress=True)
    rows = []
    for rank in (int(r) for r in args.ranks.split(",")):
        f, loss = fitted_embedding(teacher, rank, trained.corpus.train, builder.cfg.embed_steps, builder.cfg.seed)
        capped = copy.deepcopy(teacher)
        capped.embeddings = RankEmbedding(f)
        cap = scores(Model("cap", "reference", Encoder(capped).eval()), texts, dev)
        a = Architecture(arch.teacher_hidden, rank, arch.blocks, arch.vocab_size, arch.max_positions)
        torch.manual_seed(builder.cfg.seed)
        student = assemble(a, trained, f)
        start = time.perf_counter()
        record = builder.distil(student, f"finetune E={rank}")
        got = scores(Model(f"E={rank}", "searched", student), texts, dev)
        row = {"rank": rank, "embed_fit_mse": loss, "cap": cap, "student": got,
               "finetune_s": time.perf_counter() - start, "loss_last": record.get("loss_last")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{args.steps} fine-tuning steps; news = {OOD_TEXTS} Lee news sentences, dev = {REVIEWS_FILE}\n")
    print("| E | fit MSE | cap: news spearman / recall@10 | student: test cos | dev spearman / recall@10 "
          "| news cos / spearman / recall@10 | fine-tune s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        c, s = r["cap"], r["student"]
        print(f"| {r['rank']} | {r['embed_fit_mse']:.4f} | {c['news_similarity_spearman']:.3f} / "
              f"{c['news_neighbour_recall_at_10']:.3f} | {s['test_fidelity_cosine']:.3f} | "
              f"{s['dev_similarity_spearman']:.3f} / {s['dev_neighbour_recall_at_10']:.3f} | "
              f"{s['news_fidelity_cosine']:.3f} / {s['news_similarity_spearman']:.3f} / "
              f"{s['news_neighbour_recall_at_10']:.3f} | {r['finetune_s']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
