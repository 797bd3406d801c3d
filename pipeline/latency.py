"""Latency tables (pandas CSV) and the predictor that sums them into whole-model latency.

One row per measured part, keyed by (kind, name, d_in, d_out, batch, seq):
  call         the runtime's per-call cost of a model that does nothing (d_in = d_out = width)
  op           one candidate op in context (name = op, d_in = d_out = hidden), per copy
  embedding    the factorised embedding lookup + LayerNorm (d_in = vocab, d_out = E)
  linear       an adapter d_in -> d_out (embed -> H, H -> H', H -> teacher)
  calibration  a whole random student measured end to end (name = arch key, arch = its JSON)
Every row carries the device fingerprint (columns fp.*) and its hash; a table holds one.
Sums of parts miss what happens between them (caches, fusion, scheduling). Measured on ONNX
Runtime CPU: an attention or FFN costs ~25% less per copy among other ops in a student than in
a stack of its own copies, a separable convolution ~5% less, and bigger students run slower than
their parts (error against mean hidden size: correlation -0.84) as their weights crowd the
caches. So `predict` is a linear model over five features of the table's parts, fitted (least
squares) to the calibration students that the profile measured end to end:
    predicted = c_mha*mha + c_ffn*ffn + c_sepconv*sepconv + c_fixed*fixed + c_cache*raw*Mparams
(family sums of parts in ms; raw = their total; Mparams = weights streamed per inference, in
millions, the vocabulary table excluded since it is only gathered from). With too few students
for five coefficients it fits one line, scale*raw + offset (or, where that line would predict a
student of the call and embedding alone below the call, a ratio scale*raw); with fewer than two,
the raw sum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import short_hash, write_atomic
from pipeline.errors import PipelineError
from pipeline.space import (
    Architecture,
    Block,
    adapter_shapes,
    architecture_from_dict,
    count_params,
    linear_params,
    op_params,
    op_shape,
)

KEY = ["kind", "name", "d_in", "d_out", "batch", "seq"]
STATS = ["latency_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "n"]
COLUMNS = [*KEY, "stack", *STATS, "statistic", "arch", "profile", "measured_at", "fingerprint"]
KINDS = ("call", "op", "embedding", "linear", "calibration")
FP = "fp."  # prefix of the fingerprint columns


def fingerprint_hash(fp: dict[str, str]) -> str:
    return short_hash(fp)


def describe_fingerprint(fp: dict[str, str]) -> str:
    keys = ("backend", "precision", "cpu", "cpu_id", "isa", "threads", "gpu", "driver", "onnxruntime", "tensorrt",
            "torch")
    return ", ".join(f"{k}={fp[k]}" for k in keys if k in fp)


class LatencyTable:
    def __init__(self, df: pd.DataFrame, fingerprint: dict[str, str], path: Path | None = None):
        self.df = df
        self.fingerprint = fingerprint
        self.path = path
        self._index: dict[tuple, float] | None = None  # key -> latency_ms, built on first lookup

    # ---- construction and I/O ----
    @classmethod
    def empty(cls, fingerprint: dict[str, str], path: Path | None = None) -> LatencyTable:
        cols = COLUMNS + [FP + k for k in fingerprint]
        return cls(pd.DataFrame(columns=cols), dict(fingerprint), path)

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read and validate; a damaged file is a one-line PipelineError, never a traceback."""
        path = Path(path)
        if not path.is_file():
            raise PipelineError(f"latency table not found: {path} (run `python -m pipeline profile` first)")
        try:
            df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str)
            fp = _validate(df)
        except _Damaged as e:
            raise PipelineError(f"latency table {path} is corrupt: {e}; measure it again "
                                "(`python -m pipeline profile --force`) or restore it") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise PipelineError(f"latency table {path} is corrupt: {why}; measure it again "
                                "(`python -m pipeline profile --force`) or restore it") from None
        return cls(df, fp, path)

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path or self.path)
        return write_atomic(path, lambda tmp: self.df.to_csv(tmp, index=False))

    # ---- rows ----
    @property
    def fingerprint_hash(self) -> str:
        return fingerprint_hash(self.fingerprint)

    def keys(self) -> set[tuple]:
        return set(map(tuple, self.df[KEY].astype(str).values.tolist()))

    def add(self, key: tuple, stats: dict[str, Any], extra: dict[str, Any]) -> None:
        row = dict(zip(KEY, key, strict=True))
        row.update({k: stats[k] for k in STATS})
        row.update(extra)
        row["fingerprint"] = self.fingerprint_hash
        row.update({FP + k: v for k, v in self.fingerprint.items()})
        new = pd.DataFrame([row], columns=self.df.columns)
        self.df = new if self.df.empty else pd.concat([self.df, new], ignore_index=True)
        self._index = None

    def lookup(self, kind: str, name: str, d_in: int, d_out: int, batch: int, seq: int) -> float:
        # A dict, not a DataFrame filter: the search predicts thousands of candidates.
        if self._index is None:
            rows = self.df[[*KEY, "latency_ms"]].itertuples(index=False)
            self._index = {(str(k), str(n), int(i), int(o), int(b), int(s)): float(ms) for k, n, i, o, b, s, ms in rows}
        try:
            return self._index[(kind, name, d_in, d_out, batch, seq)]
        except KeyError:
            raise PipelineError(
                f"latency table {self.path or ''} has no row for {kind} {name} {d_in}->{d_out} at batch {batch}, "
                f"seq {seq}; profile a space (teacher, profile) that includes it"
            ) from None

    def calibration_rows(self, batch: int, seq: int) -> list[tuple[Architecture, float]]:
        df = self.df
        rows = df[(df.kind == "calibration") & (df.batch == batch) & (df.seq == seq)]
        pairs = zip(rows.arch, rows.latency_ms, strict=True)
        return [(architecture_from_dict(json.loads(a)), float(ms)) for a, ms in pairs]


class _Damaged(Exception):
    """Why a table's contents are not a table (LatencyTable.load adds the file and the fix)."""


def _validate(df: pd.DataFrame) -> dict[str, str]:
    """Check a table read as strings, convert its numeric columns in place, return its fingerprint."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise _Damaged(f"missing column(s) {shown}")
    fp_cols = [c for c in df.columns if c.startswith(FP)]
    if df.empty:
        raise _Damaged("it has no rows")
    if not fp_cols:
        raise _Damaged(f"it has no fingerprint columns ({FP}*)")
    incomplete = df[[*KEY, "stack", *STATS, "fingerprint", *fp_cols]].isna().any(axis=1)
    if incomplete.any():
        raise _Damaged(f"line {int(incomplete.to_numpy().argmax()) + 2} is incomplete (cut off?)")
    hashes = df["fingerprint"].unique()
    if len(hashes) != 1:
        raise _Damaged(f"rows from {len(hashes)} fingerprints ({', '.join(hashes)}); a table holds one")
    fp = {c[len(FP):]: str(df.iloc[0][c]) for c in fp_cols}
    if fingerprint_hash(fp) != hashes[0] or any(df[c].nunique() != 1 for c in fp_cols):
        raise _Damaged(f"its fingerprint columns do not match the recorded fingerprint {hashes[0]}")
    if not set(df["kind"]) <= set(KINDS):
        raise _Damaged(f"unknown row kind(s) {sorted(set(df['kind']) - set(KINDS))}")
    try:
        for c in ["d_in", "d_out", "batch", "seq", "stack", "n"]:
            df[c] = pd.to_numeric(df[c], errors="raise").astype(int)
        for c in STATS[:-1]:
            df[c] = pd.to_numeric(df[c], errors="raise").astype(float)
    except (ValueError, TypeError) as e:
        raise _Damaged(f"non-numeric values ({str(e).splitlines()[0]})") from None
    if not np.isfinite(df["latency_ms"]).all():
        raise _Damaged("infinite latency_ms values")
    if (df["latency_ms"] < 0).any():  # every row is a measured time (an op's divided by its stack): never below 0
        raise _Damaged(f"a negative latency_ms on line {int((df['latency_ms'] < 0).to_numpy().argmax()) + 2}")
    if df.duplicated(KEY).any():
        raise _Damaged("duplicated rows for the same part")
    for i, a in df.loc[df["kind"] == "calibration", "arch"].items():
        try:
            architecture_from_dict(json.loads(a))
        except (TypeError, ValueError, PipelineError):
            raise _Damaged(f"line {i + 2} holds no valid architecture") from None
    return fp


FAMILIES = ("mha", "ffn", "sepconv", "fixed")
FEATURES = (*FAMILIES, "cache")
TERMS = (*FAMILIES, "streamed_mparams", "params")


def family(part: str) -> str:
    """Which calibration family a part of `Predictor.parts` belongs to (the teacher's pruned attention
    and FFN count as mha and ffn: the same kernels at other sizes)."""
    op = part.split("@")[0]
    try:
        kind = op_shape(op, 1).kind
    except ValueError:  # call, embedding, linear: not ops
        return "fixed"
    return kind if kind in ("mha", "ffn", "sepconv") else "fixed"


def streamed_mparams(arch: Architecture) -> float:
    """Weights read per inference, in millions: every parameter but the vocabulary table."""
    return (count_params(arch) - arch.vocab_size * arch.embed_dim) / 1e6


@dataclass(frozen=True)
class Calibration:
    coefs: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 0.0)  # per feature, in FEATURES order
    offset_ms: float = 0.0
    archs: int = 0                   # whole students it was fitted to; 0 = uncalibrated
    max_abs_error_pct: float = 0.0   # worst fitted error over those students
    method: str = "none"             # per-feature, line, ratio or none

    def apply(self, features: np.ndarray) -> float:
        return float(np.dot(self.coefs, features) + self.offset_ms)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "archs": self.archs, "offset_ms": self.offset_ms,
                "coefs": dict(zip(FEATURES, self.coefs, strict=True)), "max_abs_error_pct": self.max_abs_error_pct}


class Predictor:
    """Whole-model latency of an architecture from a table, at one batch and sequence length."""

    MIN_PER_COEF = 3  # calibration students per coefficient before fitting one per feature

    def __init__(self, table: LatencyTable, batch: int, seq: int):
        self.table, self.batch, self.seq = table, batch, seq
        self.calibration = self._fit()

    def parts(self, arch: Architecture) -> list[tuple[str, float]]:
        t, b, s = self.table, self.batch, self.seq
        parts = [
            ("call", t.lookup("call", "call", arch.teacher_hidden, arch.teacher_hidden, b, s)),
            ("embedding", t.lookup("embedding", "embedding", arch.vocab_size, arch.embed_dim, b, s)),
        ]
        parts += [(f"linear {i}->{o}", t.lookup("linear", "linear", i, o, b, s)) for i, o in adapter_shapes(arch)]
        for blk in arch.blocks:
            parts += [(f"{op}@{blk.hidden}", t.lookup("op", op, blk.hidden, blk.hidden, b, s))
                      for op in blk.layers if op != "identity"]
        return parts

    def family_ms(self, arch: Architecture) -> np.ndarray:
        """Summed parts per family, in FAMILIES order."""
        out = np.zeros(len(FAMILIES))
        for name, ms in self.parts(arch):
            out[FAMILIES.index(family(name))] += ms
        return out

    def raw_ms(self, arch: Architecture) -> float:
        return float(self.family_ms(arch).sum())

    def features(self, arch: Architecture) -> np.ndarray:
        fam = self.family_ms(arch)
        return np.append(fam, fam.sum() * streamed_mparams(arch))  # FEATURES order

    def __call__(self, arch: Architecture) -> float:
        """Predicted latency in ms (the table's statistic): what the search calls."""
        return self.calibration.apply(self.features(arch))

    def block_ms(self, block: Block) -> float:
        """Calibrated latency of one block's ops alone, for ranking candidates of the same block.

        Adapters, embedding and call overhead depend on the neighbouring blocks and are left to the
        whole-model prediction; the cache term (not additive over blocks) is left out too.
        """
        t, b, s, coefs = self.table, self.batch, self.seq, self.calibration.coefs
        return sum(coefs[FAMILIES.index(family(op))] * t.lookup("op", op, block.hidden, block.hidden, b, s)
                   for op in block.layers if op != "identity")

    # ---- the prediction as a sum of terms, for the search to score millions of combinations at once ----
    # A term vector holds the family sums of FAMILIES (ms), then streamed Mparams and total params. Terms
    # of the parts of a student add up to the student's, and predict_terms() of that sum is exactly
    # __call__ of the student (tested), because both family sums and Mparams are additive.

    def block_terms(self, block: Block) -> np.ndarray:
        """The ops of one block (width block.hidden)."""
        t = np.zeros(len(TERMS))
        for op in block.layers:
            if op != "identity":
                t[FAMILIES.index(family(op))] += self.table.lookup("op", op, block.hidden, block.hidden,
                                                                   self.batch, self.seq)
                t[4] += op_params(op, block.hidden) / 1e6
        t[5] = t[4] * 1e6
        return t

    def link_terms(self, d_in: int, d_out: int) -> np.ndarray:
        """One adapter d_in -> d_out (embedding -> H1, H_i -> H_i+1, H_last -> teacher)."""
        t = np.zeros(len(TERMS))
        t[FAMILIES.index("fixed")] = self.table.lookup("linear", "linear", d_in, d_out, self.batch, self.seq)
        t[5] = linear_params(d_in, d_out)
        t[4] = t[5] / 1e6
        return t

    def base_terms(self, teacher_hidden: int, vocab_size: int, embed_dim: int, max_positions: int) -> np.ndarray:
        """The runtime's call and the embeddings: in every student."""
        t = np.zeros(len(TERMS))
        t[FAMILIES.index("fixed")] = (
            self.table.lookup("call", "call", teacher_hidden, teacher_hidden, self.batch, self.seq)
            + self.table.lookup("embedding", "embedding", vocab_size, embed_dim, self.batch, self.seq))
        t[5] = vocab_size * embed_dim + max_positions * embed_dim + 2 * embed_dim
        t[4] = (t[5] - vocab_size * embed_dim) / 1e6
        return t

    def predict_terms(self, terms: np.ndarray) -> np.ndarray:
        """terms [..., len(TERMS)] -> predicted ms [...]: __call__ for whole students' summed terms."""
        c = np.asarray(self.calibration.coefs)
        fam = terms[..., : len(FAMILIES)]
        return fam @ c[: len(FAMILIES)] + c[len(FAMILIES)] * fam.sum(-1) * terms[..., 4] + self.calibration.offset_ms

    def _fit(self) -> Calibration:
        rows = self.table.calibration_rows(self.batch, self.seq)
        if len(rows) < 2:
            return Calibration()
        x = np.array([self.features(a) for a, _ in rows])  # [students, features]
        y = np.array([ms for _, ms in rows])
        if len(rows) >= self.MIN_PER_COEF * len(FEATURES):
            coefs, *_ = np.linalg.lstsq(x, y, rcond=None)
            if (coefs[:len(FAMILIES)] > 0).all():  # a non-positive op weight would extrapolate nonsense
                err = np.abs(x @ coefs / y - 1) * 100
                return Calibration(tuple(map(float, coefs)), 0.0, len(rows), float(err.max()), "per-feature")
        raw = x[:, :len(FAMILIES)].sum(1)
        scale, offset = np.polyfit(raw, y, 1)
        # A line through a few noisy students can run below zero for students smaller than them (it did
        # at 3 students: -0.12 ms), and the search then takes any budget. Every student holds the call
        # and the embedding, so the line must keep the smallest possible student (those parts alone) at
        # no less than the call of a model that does nothing; otherwise fit a ratio (through zero).
        call, floor = self._floor([a for a, _ in rows])
        method = "line"
        if scale <= 0 or scale * floor + offset < call:
            scale, offset, method = float(raw @ y / (raw @ raw)), 0.0, "ratio"
        err = np.abs((scale * raw + offset) / y - 1) * 100
        coefs = (float(scale),) * len(FAMILIES) + (0.0,)
        return Calibration(coefs, float(offset), len(rows), float(err.max()), method)

    def _floor(self, archs: list[Architecture]) -> tuple[float, float]:
        """(the runtime's call, call + embedding): the least any student of these frames costs, in ms."""
        t, b, s = self.table, self.batch, self.seq
        calls = [t.lookup("call", "call", a.teacher_hidden, a.teacher_hidden, b, s) for a in archs]
        embeds = [t.lookup("embedding", "embedding", a.vocab_size, a.embed_dim, b, s) for a in archs]
        return min(calls), min(c + e for c, e in zip(calls, embeds, strict=True))
