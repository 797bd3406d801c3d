"""The command line's parser: one subcommand per stage, its flags read from the stages' configs."""

from __future__ import annotations

import argparse

from pipeline.config import shipped_devices
from pipeline.finetune.distill import DistillConfig
from pipeline.options import add_options
from pipeline.run import RunOptions
from pipeline.search.job import METHODS
from pipeline.search.naskd import NasKdConfig
from pipeline.task.train import TaskConfig
from pipeline.train.blockwise import TrainConfig

TRAIN_OVERRIDES = ["epochs", "epoch_steps", "batch_size", "seq_len", "sandwich_every", "init", "prune"]
FINETUNE_FLAGS = ["steps", "views", "span_rows", "device"]  # DistillConfig's fields, --finetune-*
TASK_FLAGS = ["method", "pkd", "pkd_states", "student_head", "student_dropout", "adapt_steps", "alpha", "temperature",
              "beta", "steps", "lr", "teacher_steps", "transfer", "seed", "teacher_seed", "device"]
RUN_FLAGS = ["quick", "finetune_steps", "finetune_views", "finetune_spans", "finetune_device", "int8", "max_params",
             "init", "prune", "top_t", "rerank", "rerank_steps", "search_method", "naskd_steps", "naskd_widths", "task",
             "task_train", "task_dev", "task_test", "task_dataset", "task_unlabeled", "min_readout", "min_attention",
             "margin", "baselines", "force", "seed"]

STAGES = """\
stages, each a subcommand (COMMAND --help):
  1 profile    device profile -> this machine's latency table of every candidate op
  2 train      teacher + corpus -> block-wise distilled supernet, candidate pools
  3 search     supernet + latency table + budget(s) -> architecture per budget
  4 export     architecture -> HF folder, ONNX, ORT-optimised, int8, TensorRT engine
  5 benchmark  teacher vs students vs hand-designed baselines on the device -> report
  6 task       labelled task + exported students -> task students (PKD), accuracy at measured latency
  run          stages 1-5 in a row (6 with --task), reusing what is already done (the main job)
helpers:
  predict      latency of an architecture JSON from a latency table
  space        the search space a teacher gives; --sample writes random architectures
  cache        what the disk cache holds ($PIPELINE_CACHE); `cache clear` empties it
  bundle       the default teacher and text in one folder, for a machine without them ($PIPELINE_BUNDLE)

devices: --device NAME reads profiles/NAME.yaml (shipped: {devices});
         --profile PATH reads any profile file, which is how new hardware is profiled.
tables:  latency_tables/<profile>/<fingerprint>.csv, one per machine ($PIPELINE_TABLES moves them).
"""


def _add_device_args(p: argparse.ArgumentParser, table: bool = True, foreign: bool = True) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--device", help="shipped device profile name (cpu, gpu, tensorrt); default cpu")
    g.add_argument("--profile", help="path to a device profile YAML (for new hardware)")
    if table:
        p.add_argument("--table", help="latency table CSV (default: this machine's, "
                       "latency_tables/<profile>/<fingerprint>.csv)")
    if table and foreign:
        p.add_argument("--foreign-table", action="store_true",
                       help="use a --table measured on another machine (another fingerprint), with a warning")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """What predict and benchmark share: the sequence length measured or predicted, and JSON output."""
    p.add_argument("--seq", type=int, help="sequence length (default: the profile's first)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_text_args(p: argparse.ArgumentParser, corpus: bool = True) -> None:
    add_options(p, RunOptions, ["teacher"])
    if corpus:
        add_options(p.add_mutually_exclusive_group(), RunOptions, ["corpus", "dataset"])


def _add_common(p: argparse.ArgumentParser, out: str | None, force: str | None = None) -> None:
    if out:
        p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if force:
        p.add_argument("--force", action="store_true", help=force)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


SEARCH_FLAGS = ["max_params", "top_t", "rerank", "rerank_steps", "min_readout", "min_attention", "margin"]
NASKD_FLAGS = ["steps", "widths"]  # NasKdConfig's, for --method nas-kd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Hardware-aware BERT compression: NAS-BERT latency tables, search, export, benchmark.",
        epilog=STAGES.format(devices=", ".join(shipped_devices())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("profile", help="measure every candidate op on a device into a latency table",
                       description="Measure every op of the teacher's search space, the fixed parts and a few "
                       "whole students on the device's runtime; write a fingerprinted latency table. "
                       "An interrupted profile resumes where it stopped.")
    _add_device_args(p, foreign=False)
    _add_text_args(p, corpus=False)
    p.add_argument("--force", action="store_true", help="re-measure everything, replacing the table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--teacher-shapes", action="store_true",
                   help="also the teacher's own layers pruned to a grid of its heads and FFN neurons (what "
                   "`train --prune` searches)")

    p = sub.add_parser("predict", help="predict an architecture's latency from a latency table")
    _add_device_args(p)
    p.add_argument("--arch", required=True, help="architecture JSON")
    _add_output_args(p)

    p = sub.add_parser("benchmark", help="the report: teacher, exported students and baselines on the device",
                       description="With --export-dir: load the teacher (exported and optimised by ONNX Runtime "
                       "at its best), the exported students and what a user makes by hand (the teacher's first k "
                       "layers at every depth, distilled as the students were; a narrowed BERT per student; "
                       "model2vec), each also in int8 on ONNX Runtime devices, on the device's runtime; time them "
                       "together, score them against the teacher on held-out and out-of-domain text, mark the "
                       "Pareto fronts, choose what to deploy at each budget, and write OUT/report.md, report.csv, "
                       "report.json and pareto.png. With --arch: time one architecture (random weights) beside "
                       "its predicted latency.")
    _add_device_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--export-dir", help="output folder of `export`: write the full report")
    g.add_argument("--arch", help="architecture JSON: time it beside the prediction")
    p.add_argument("--out", default="runs/benchmark", help="report folder (with --export-dir)")
    add_options(p, RunOptions, ["baselines", "int8"])
    _add_output_args(p)

    p = sub.add_parser("train", help="train the supernet by block-wise distillation, with progressive shrinking",
                       description="NAS-BERT stage 2: split the teacher into blocks, train a weight-sharing supernet "
                       "block per teacher block to reproduce its output states (one random path per step), prune "
                       "the candidates by progressive shrinking in bins of similar latency and size, and write a "
                       "pool of candidates per block with their validation losses to OUT/train_summary.json. "
                       "A killed run resumes from its checkpoints; finished blocks are reused. "
                       "Several processes: torchrun --nproc_per_node N -m pipeline train ... (each rank trains "
                       "its share of the blocks).")
    _add_text_args(p)
    p.add_argument("--block", type=int, action="append", metavar="N",
                   help="train only block N (1-based; repeatable); blocks are independent")
    p.add_argument("--quick", action="store_true", help="scaled-down schedule for a CPU (a few minutes)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where training runs (not the target)")
    p.add_argument("--target", default="cpu", help="device profile (shipped name) whose latency table bins the "
                   "candidates (default cpu)")
    p.add_argument("--table", help="that latency table (default: this machine's table of --target; without one "
                   "the bins use parameters only)")
    p.add_argument("--foreign-table", action="store_true", help="use a --table measured on another machine")
    # Not given: the schedule's own (the default or --quick's), shown in the help.
    add_options(p, TrainConfig, TRAIN_OVERRIDES, defaults=dict.fromkeys(TRAIN_OVERRIDES))
    _add_common(p, "runs/train", "discard checkpoints and results in OUT and start over")

    p = sub.add_parser("search", help="the best architecture under each latency budget, from the trained pools",
                       description="Combine the per-block candidate pools of a trained supernet into the student "
                       "with the lowest estimated loss (sum of block losses) whose latency, predicted from the "
                       "device's latency table, fits each budget (exact search; preferring students with "
                       "--min-attention attention layers, then last blocks wide enough for --min-readout, then "
                       "students using 90% of their budget), then re-rank T candidates (--rerank) and keep the best. "
                       "Writes OUT/arch_<budget>.json and OUT/search.json.")
    _add_device_args(p)
    p.add_argument("--budget", required=True, help="latency budget(s): 5ms, 500us, 0.01s, or a speed-up over the "
                   "teacher timed on the device: 4x; several: 5ms,8ms,12ms")
    p.add_argument("--train-dir", default="runs/train", help="output folder of `train` (default runs/train)")
    p.add_argument("--method", default="nasbert", choices=METHODS,
                   help="nasbert: the best student of the shrunk pools (default); nas-kd: NAS-KD's differentiable "
                   "search with the device's expected latency as a penalty")
    # A search alone takes the budget as given; `run` keeps its margin (RunOptions.margin).
    add_options(p, RunOptions, SEARCH_FLAGS, defaults={"margin": 0.0})
    add_options(p, NasKdConfig, NASKD_FLAGS)
    p.add_argument("--seq", type=int, help="sequence length of the prediction (default: the profile's first)")
    p.add_argument("--out", default="runs/search", help="output folder (default runs/search)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("export", help="searched architectures -> deployable students, every artifact checked",
                       description="Assemble each searched architecture from the supernet (adapters between blocks "
                       "fused into one matrix), optionally finish it by end-to-end distillation, and write per "
                       "architecture: a Hugging Face-style folder (config.json, model.safetensors, tokenizer; load "
                       "it with pipeline.model.hf.load_student), model.onnx (dynamic batch and sequence), "
                       "model.opt.onnx (ONNX Runtime-optimised), model.int8.onnx (unless --no-int8), and the "
                       "device's own build (a TensorRT engine for tensorrt). Each is compared with the PyTorch "
                       "student and the max |diff| is recorded in export.json.")
    _add_device_args(p, table=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--search-dir", default="runs/search", help="output folder of `search` (default runs/search)")
    g.add_argument("--arch", action="append", help="architecture JSON instead (repeatable)")
    p.add_argument("--train-dir", default="runs/train", help="output folder of `train`, the weights "
                   "(default runs/train)")
    add_options(p, DistillConfig, FINETUNE_FLAGS)
    add_options(p, RunOptions, ["int8"])
    _add_common(p, "runs/export", "re-export even what is already exported")

    p = sub.add_parser("run", help="profile, train, search, export and benchmark in a row (the main job)",
                       description="Chain every stage for a device and latency budget(s). A stage whose artifact "
                       "exists and whose inputs did not change is reused, so a second identical run takes "
                       "seconds; --force redoes them. Ends with one line per budget: met or not, measured latency, "
                       "speedup, fidelity, where the model is.")
    _add_device_args(p)
    p.add_argument("--budget", required=True, help="latency budget(s): 5ms, 500us, 0.01s, or a speed-up over the "
                   "teacher timed on the device (4x: a quarter of its latency); several: 3ms,5ms")
    _add_text_args(p)
    p.add_argument("--out", help="run folder (default runs/<device>)")
    add_options(p, RunOptions, RUN_FLAGS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("task", help="distil the exported students for a labelled task (PKD); accuracy at latency",
                       description="Fine-tune the teacher on a labelled task (cached), teach it to each exported "
                       "student with PKD (and to PKD's own student, the teacher's first layers, with the same "
                       "recipe), export and time every task model on the device, and write OUT/task_report.md, "
                       ".csv, .json and task_accuracy.png. Without --train or --task-dataset: the offline default "
                       "task, WordNet glosses labelled with their 45 lexicographer files.")
    _add_device_args(p, table=False)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--export-dir", help="output folder of `export`: every student in it")
    g.add_argument("--student", help="one student folder (export's <name>/model)")
    p.add_argument("--train", help="labelled examples: .csv, .tsv or .jsonl (alone: split 80/10/10, seeded)")
    p.add_argument("--dev", help="dev examples (same format)")
    p.add_argument("--test", help="test examples (same format)")
    p.add_argument("--task-dataset", help="a `datasets` name, NAME or NAME:CONFIG (GLUE: glue:sst2)")
    p.add_argument("--unlabeled", help="text of the task without labels (same format, its text column): the "
                   "students also learn the teacher's predictions on it (unless --no-transfer)")
    p.add_argument("--text-column", default="text", help="column of the text (default: text)")
    p.add_argument("--pair-column", help="column of the second text, for sentence-pair tasks")
    p.add_argument("--label-column", default="label", help="column of the label (floats: a regression)")
    p.add_argument("--teacher", help="teacher: HF id or folder (default: the one the exported students were "
                   "distilled from, else the offline MiniLM)")
    p.add_argument("--out", default="runs/task", help="report folder (default runs/task)")
    p.add_argument("--quick", action="store_true", help="fewer steps and a third of the default task (CPU minutes)")
    p.add_argument("--force", action="store_true", help="redo the stage even if its report is up to date")
    add_options(p, TaskConfig, TASK_FLAGS)
    add_options(p, RunOptions, ["baselines", "int8"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("space", help="describe the search space of a teacher; sample architectures")
    _add_text_args(p, corpus=False)
    p.add_argument("--sample", type=int, default=0, metavar="N", help="write N random architectures")
    p.add_argument("--teacher-shapes", action="store_true", help="the space with the teacher's pruned layers "
                   "(`train --prune`)")
    p.add_argument("--out", default="archs", help="folder for sampled architectures (default archs/)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("cache", help="what the disk cache holds ($PIPELINE_CACHE); empty it",
                       description="The disk cache ($PIPELINE_CACHE, default ~/.cache/pipeline) keeps what the "
                       "stages can make again: tokenised corpora, the teacher's states, fitted embeddings, task "
                       "teachers and adapted students, model2vec peers, TensorRT timing caches. `list` shows it "
                       "per kind; `clear` removes the entries chosen (all by default); a run that needs one "
                       "again recomputes it. Run directories and latency tables are never touched.")
    p.add_argument("action", nargs="?", choices=["list", "clear"], default="list",
                   help="list (default) or clear; `list` with the same filters shows what `clear` would remove")
    p.add_argument("--kind", action="append", default=[], metavar="KIND",
                   help="only this kind (repeatable): states, corpus, embeddings, task-teacher, ...")
    p.add_argument("--older-than", type=float, metavar="DAYS",
                   help="only entries no run has written or reused for DAYS days")

    p = sub.add_parser("bundle", help="the default teacher and text in one folder, for a machine without them",
                       description="Write the default teacher (float16 weights unless --full-precision, about 45 "
                       "MB) and the text the defaults read (WordNet, the Wikipedia excerpt, pydoc topics, "
                       "docstrings, the news sentences; about 6 MB compressed) into a new folder. On a machine "
                       "without the packages that ship them (an air-gapped server, another Python), "
                       "PIPELINE_BUNDLE=DIR makes every default read the bundle: the same documents, so the "
                       "same corpus and its cache key.")
    p.add_argument("out", help="the folder to write (new, or empty)")
    p.add_argument("--full-precision", action="store_true",
                   help="keep the teacher's weights in float32 (twice the size)")
    return parser
