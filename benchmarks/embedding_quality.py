"""Embedding quality of a report's students beside reference points that need no search at all.

    python benchmarks/embedding_quality.py --report runs/cpu/report.json

Reads the report's quality columns (the deployed artifacts, both sources) and adds, on the same
texts and by the same measures (pipeline/benchmark/quality.py):
- the teacher's token embeddings, no layers: a bag of the teacher's input vectors;
- the teacher's first 3 layers, untrained (PKD's initialisation);
- the teacher's own embeddings reduced to 64 dimensions by PCA (fit on the texts themselves):
  what a good 64-dim summary of the teacher keeps (no cosine: another space).
No timing: it can run beside other work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.benchmark.evaluate import OOD_TEXTS, EvalTexts, Model, evaluate
from pipeline.benchmark.quality import embedding_quality
from pipeline.model.teacher import Encoder, truncated_teacher
from pipeline.model.texts import news_sentences
from pipeline.train.trained import TrainedSupernet

MEASURES = ("fidelity_cosine", "similarity_spearman", "neighbour_recall_at_10")


class TokenBag(torch.nn.Module):
    """The teacher's word + position embeddings, layer-normed as its first layer sees them."""

    def __init__(self, bert):
        super().__init__()
        self.embeddings = bert.embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids=input_ids)


def pca_quality(ref: torch.Tensor, dims: int = 64) -> dict[str, float | None]:
    centred = ref - ref.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return embedding_quality(F.normalize(centred @ v[:dims].T, dim=-1), ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", required=True, help="report.json of `benchmark` or `run`")
    args = ap.parse_args()
    report = json.loads(Path(args.report).read_text())
    export = json.loads((Path(report["export_dir"]) / "export.json").read_text())
    trained = TrainedSupernet(export["train_dir"])
    teacher = trained.teacher_model
    texts = EvalTexts.make(Encoder(teacher).eval(), trained.tokenizer, trained.corpus.test,
                           news_sentences(OOD_TEXTS, seed=0))
    rows = [(r["name"], r["kind"], {k: r.get(k) for k in (*MEASURES, *(f"ood_{m}" for m in MEASURES))})
            for r in [*report["students"], *report["baselines"], *report.get("peers", [])]]
    refs = {"token embeddings, no layers": TokenBag(teacher),
            "teacher's first 3 layers, untrained": Encoder(truncated_teacher(teacher, 3))}
    for name, module in refs.items():
        rows.append((name, "reference", evaluate(Model(name, "reference", module.eval()), texts)))
    pca = {**pca_quality(texts.ref_test), **{f"ood_{k}": v for k, v in pca_quality(texts.ref_ood).items()}}
    rows.append(("teacher, PCA to 64 dims", "reference", pca))
    head = ["model", "kind", "cos", "spearman", "recall@10", "OOD cos", "OOD spearman", "OOD recall@10"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, kind, q in rows:
        cells = [q.get(k) for k in (*MEASURES, *(f"ood_{m}" for m in MEASURES))]
        print(f"| {name} | {kind} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
