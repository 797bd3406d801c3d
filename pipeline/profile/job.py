"""`profile`: the stage that measures this machine's latency table, and what it tells the user.

The measuring is probes.py; this module checks the request before any work (a space the
device profile cannot time, a table of another machine at the path) and describes the result:
how many rows were measured, and how well the parts add up to whole students (latency.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.config import DeviceProfile
from pipeline.devices import Backend
from pipeline.latency import LatencyTable, Predictor
from pipeline.profile.probes import check_fits, open_table, profile_device
from pipeline.space import SearchSpace


def run_profile(backend: Backend, space: SearchSpace, path: Path, force: bool = False, progress: bool = True,
                log: Callable[[str], None] = print) -> tuple[LatencyTable, int]:
    """Measure what the table at `path` lacks; returns the table and the number of rows measured now."""
    p = backend.profile
    # Refuse a corrupt or foreign table before any work; what it holds already is not measured again.
    check_fits(p, space)
    before = len(open_table(path, backend.fingerprint(), force).df)
    log(f"profiling device '{p.name}' ({p.backend}, {p.precision}, batch {p.batch}, seq {list(p.seq_lens)}) "
        f"for a space of {len(space.ops())} ops x hidden {list(space.hidden_sizes)}")
    table = profile_device(backend, space, path, force=force, progress=progress)
    added = len(table.df) - (0 if force else before)
    if added:
        for line in calibration_lines(table, p):
            log(line)
    return table, added


def calibration_lines(table: LatencyTable, profile: DeviceProfile) -> list[str]:
    """How the table's parts fit its whole students, per sequence length."""
    lines = []
    for seq in profile.seq_lens:
        cal = Predictor(table, profile.batch, seq).calibration
        coefs = ", ".join(f"{k} {v:.3f}" for k, v in cal.as_dict()["coefs"].items())
        lines.append(f"seq {seq}: calibrated ({cal.method}) on {cal.archs} whole students: coefficients {coefs}, "
                     f"offset {cal.offset_ms:+.3f} ms; worst fitted error {cal.max_abs_error_pct:.1f}%")
    return lines
