"""How well does the latency table predict whole students? (goal: every arch within 5%, median 2%)

Draws N random architectures of the teacher's space (a different seed from the calibration
students), predicts each from the table, measures all of them together in rounds on the device
(the same statistic as the table), and prints the table of errors and the summary.

A shared machine drifts: between a profile and a benchmark minutes apart even the minimum moved
by 2-3% here (neighbours share the L3 and memory bandwidth). So `--anchors K` of the table's own
calibration students are re-measured in the same rounds; their median ratio (now / in the
table) is the machine's drift, and the errors are printed both raw and with the drift removed.

    python benchmarks/predictor_accuracy.py --device cpu [--n 30] [--table PATH] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np

from pipeline.benchmark.measure import drift_of, measure_architectures
from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.devices.timing import STATISTIC
from pipeline.errors import PipelineError
from pipeline.model.teacher import space_for_teacher
from pipeline.space import count_params
from pipeline.tables import choose_table, load_predictor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--table", default=None)
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1, help="architectures' seed (the calibration students use 0)")
    ap.add_argument("--anchors", type=int, default=8, help="calibration students re-measured to estimate drift")
    args = ap.parse_args(argv)
    try:
        profile = resolve_profile(args.device, args.profile)
        backend = get_backend(profile)
        space = space_for_teacher(args.teacher)
        seq = profile.seq_lens[0]
        choice = choose_table(profile, backend, args.table)
        path = choice.path
        predictor, _ = load_predictor(profile, choice, seq)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.n)]
    predicted = [predictor(a) for a in archs]
    anchors = predictor.table.calibration_rows(profile.batch, seq)[: args.anchors]
    lats = measure_architectures(backend, archs + [a for a, _ in anchors], seq, progress=True)
    lats, anchor_lats = lats[: len(archs)], lats[len(archs):]
    measured = drift_of([lat.robust_ms for lat in anchor_lats], [ms for _, ms in anchors])
    drift = measured["ratio"] if measured else 1.0
    cal = predictor.calibration
    print(f"\ndevice {profile.name} ({backend.name}), batch {profile.batch}, seq {seq}, statistic: {STATISTIC}")
    print(f"table {path}: calibration {cal.as_dict()}\n")
    print(f"machine drift since the profile: {(drift - 1) * 100:+.2f}% "
          f"(median over {len(anchors)} calibration students re-measured in the same rounds)\n")
    print(f"{'#':>3} {'params':>7} {'predicted':>10} {'measured':>9} {'p50':>8} {'error':>7} {'drift-free':>10}"
          "  architecture")
    raw, adj = [], []
    for i, (a, pred, lat) in enumerate(zip(archs, predicted, lats, strict=True)):
        raw.append((pred / lat.robust_ms - 1) * 100)
        adj.append((pred * drift / lat.robust_ms - 1) * 100)
        print(f"{i:>3} {count_params(a) / 1e6:>6.2f}M {pred:>8.3f}ms {lat.robust_ms:>7.3f}ms {lat.p50_ms:>6.3f}ms "
              f"{raw[-1]:>+6.1f}% {adj[-1]:>+9.1f}%  {a.describe()}")
    print()
    for name, errs in (("raw", raw), ("drift-free", adj)):
        e = np.abs(np.array(errs))
        ok = e.max() <= 5 and np.median(e) <= 2
        print(f"{name:>10} |error|: median {np.median(e):.2f}%, mean {e.mean():.2f}%, max {e.max():.2f}%; "
              f"within 5%: {(e <= 5).sum()}/{len(e)}, within 2%: {(e <= 2).sum()}/{len(e)}; "
              f"signed median {np.median(errs):+.2f}%  goal (all within 5%, median within 2%): "
              f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
