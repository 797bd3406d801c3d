"""How well does the latency table predict whole students? (issue: every arch within 5%, median 2%)

Draws N random architectures of the teacher's space (a different seed from the calibration
students), predicts each from the table, measures all of them together in rounds on the device
(the same statistic as the table), and prints the table of errors and the summary.

    python benchmarks/predictor_accuracy.py --device cpu [--n 30] [--table PATH] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from pipeline.benchmark import measure_architectures
from pipeline.cli import default_table, load_predictor
from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.errors import PipelineError
from pipeline.space import count_params
from pipeline.teacher import space_for_teacher
from pipeline.timing import STATISTIC


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--table", default=None)
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1, help="architectures' seed (the calibration students use 0)")
    args = ap.parse_args(argv)
    try:
        profile = resolve_profile(args.device, args.profile)
        backend = get_backend(profile)
        space = space_for_teacher(args.teacher)
        seq = profile.seq_lens[0]
        path = Path(args.table) if args.table else default_table(profile)
        predictor, _ = load_predictor(profile, backend, path, seq, foreign=False)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.n)]
    predicted = [predictor(a) for a in archs]
    lats = measure_architectures(backend, archs, seq, progress=True)
    cal = predictor.calibration
    print(f"\ndevice {profile.name} ({backend.name}), batch {profile.batch}, seq {seq}, statistic: {STATISTIC}")
    print(f"table {path}: calibration {cal.as_dict()}\n")
    print(f"{'#':>3} {'params':>7} {'predicted':>10} {'measured':>9} {'p50':>8} {'error':>7}  architecture")
    errors = []
    for i, (a, pred, lat) in enumerate(zip(archs, predicted, lats, strict=True)):
        err = (pred / lat.robust_ms - 1) * 100
        errors.append(err)
        print(f"{i:>3} {count_params(a) / 1e6:>6.2f}M {pred:>8.3f}ms {lat.robust_ms:>7.3f}ms {lat.p50_ms:>6.3f}ms "
              f"{err:>+6.1f}%  {a.describe()}")
    e = np.abs(np.array(errors))
    print(f"\n|error|: median {np.median(e):.2f}%, mean {e.mean():.2f}%, max {e.max():.2f}%; "
          f"within 5%: {(e <= 5).sum()}/{len(e)}, within 2%: {(e <= 2).sum()}/{len(e)}; "
          f"signed median {np.median(errors):+.2f}%")
    ok = e.max() <= 5 and np.median(e) <= 2
    print("goal (every arch within 5%, median within 2%):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
