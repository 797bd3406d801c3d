"""How long the exact search takes, on trained pools and on larger synthetic ones.

    python benchmarks/search_speed.py --train-dir runs/train --device cpu

Prints, for the trained pools and for synthetic pools of 100 and 200 candidates per block (random
paths of the same space with random losses), the number of students scored, the time for all
budgets at once, and checks the answer against brute force where that is affordable.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.search.exact import search
from pipeline.space import Architecture, Block
from pipeline.tables import choose_table, load_predictor
from pipeline.train.supernet import SuperBlock
from pipeline.train.trained import TrainedSupernet


def timed(pools, frame, predictor, budgets, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        choices = search(pools, frame, predictor, budgets)
        best = min(best, time.perf_counter() - start)
    return best, choices


def brute_force(pools, frame, predictor, budget):
    best = None
    for combo in itertools.product(*pools):
        arch = Architecture(frame.teacher_hidden, frame.embed_dim,
                            tuple(Block(e["hidden"], tuple(e["layers"])) for e in combo),
                            frame.vocab_size, frame.max_positions)
        loss = sum(e["val_loss"] for e in combo)
        if predictor(arch) <= budget and (best is None or loss < best):
            best = loss
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-dir", default="runs/train")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--table", help="latency table (default: this machine's of --device)")
    ap.add_argument("--foreign-table", action="store_true", help="accept a table measured on another machine")
    ap.add_argument("--budgets", default="1.5,2,3,4,6", help="ms, comma-separated")
    args = ap.parse_args()
    trained = TrainedSupernet(args.train_dir)
    profile = resolve_profile(args.device, None)
    choice = choose_table(profile, get_backend(profile, require_present=False), args.table)
    predictor, _ = load_predictor(profile, choice, 128, args.foreign_table)
    budgets = [float(b) for b in args.budgets.split(",")]
    rng = random.Random(0)
    sb = SuperBlock(trained.frame.teacher_hidden, trained.hidden_sizes, trained.layers_per_block)
    candidates = sb.candidates()

    def synthetic(size):
        return [[{"hidden": c.hidden, "layers": list(c.layers), "val_loss": rng.random()}
                 for c in rng.sample(candidates, size)] for _ in range(trained.num_blocks)]

    print(f"{'pools':<22} {'students':>12} {'all budgets':>12}  brute force agrees")
    for name, pools in [("trained", trained.pools), ("synthetic 100/block", synthetic(100)),
                        ("synthetic 200/block", synthetic(200))]:
        n = 1
        for p in pools:
            n *= len(p)
        seconds, choices = timed(pools, trained.frame, predictor, budgets)
        check = "-"
        if n <= 100_000:
            check = str(all(abs(c.est_loss - brute_force(pools, trained.frame, predictor, c.budget_ms)) < 1e-9
                            for c in choices))
        print(f"{name:<22} {n:>12,} {seconds * 1000:>10.1f}ms  {check}")


if __name__ == "__main__":
    main()
