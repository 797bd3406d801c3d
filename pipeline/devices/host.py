"""What the host processor is, as far as latency is concerned: the CPU part of a fingerprint.

A latency table belongs to one machine. Two machines whose CPUs share a marketing name can still
run the same graph 2.7x apart (an AVX2-only Zen 3 and an AVX-512 Zen 4 both read "AMD EPYC"), so
the fingerprint names the processor by what picks the kernels and feeds them: vendor, the
family/model/stepping (or, on Arm, implementer/part/variant/revision), the vector instruction
sets that the runtime's kernels branch on, and the cache sizes. Everything is read from Linux's
/proc/cpuinfo and /sys; where a field cannot be read it is "unknown" (macOS, Windows), so the
fingerprint still tells the machines apart by what it can read and never crashes.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.artifacts import process_alive

CPUINFO = Path("/proc/cpuinfo")
CACHES = Path("/sys/devices/system/cpu/cpu0/cache")

# Vector and matrix extensions that ONNX Runtime's MLAS and PyTorch's kernels dispatch on; only
# these, so that a kernel update that exposes an unrelated flag (say, a new mitigation) does not
# make every table foreign. x86 names as /proc/cpuinfo spells them.
X86_ISA = (
    "sse4_2",        # the floor of the fast x86 paths
    "avx", "avx2",   # 256-bit float kernels (every GEMM of an fp32 student)
    "fma",           # fused multiply-add: halves the GEMM instruction count
    "avx512f", "avx512bw", "avx512vl",  # 512-bit kernels, chosen over AVX2 when present
    "avx512_vnni", "avx_vnni",          # int8 dot products: the int8 students' GEMMs
    "avx512_bf16", "avx512_fp16",       # bf16/fp16 arithmetic on the vector units
    "amx_tile", "amx_int8", "amx_bf16",  # Sapphire Rapids' matrix tiles: a different GEMM altogether
)
ARM_ISA = (
    "asimd",         # NEON: the baseline Arm kernels
    "asimddp",       # int8 dot products (SDOT/UDOT)
    "i8mm",          # int8 matrix multiply
    "bf16",          # bf16 arithmetic
    "fphp", "asimdhp",  # fp16 arithmetic
    "sve", "sve2",   # scalable vectors: other kernels on Graviton 3/4, Neoverse V
    "sme",           # the scalable matrix extension
)


def _cpuinfo(text: str) -> dict[str, str]:
    """The first processor's `key : value` lines (all processors of a machine are alike here)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's stanza
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _caches(root: Path) -> str:
    """'L1d 32K, L1i 32K, L2 1024K, L3 32768K' as sysfs lists them for cpu0; 'unknown' without sysfs."""
    parts = []
    for index in sorted(root.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        parts.append(f"L{level}{suffix} {size}")
    return ", ".join(parts) or "unknown"


def cpu_fingerprint(cpuinfo: Path = CPUINFO, caches: Path = CACHES) -> dict[str, str]:
    """The processor fields of a fingerprint, each a reason why latency differs without it."""
    try:
        info = _cpuinfo(cpuinfo.read_text(errors="replace"))
    except OSError:
        info = {}
    flags = set((info.get("flags") or info.get("features") or "").split())
    arm = "cpu implementer" in info
    if arm:
        vendor = info.get("cpu implementer", "unknown")
        ident = " ".join(f"{k} {info[f'cpu {k}']}" for k in ("part", "variant", "revision") if f"cpu {k}" in info)
    else:
        vendor = info.get("vendor_id", "unknown")
        ident = " ".join(f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info)
        ident = ident.replace("cpu family", "family")
    isa = [f for f in (ARM_ISA if arm else X86_ISA) if f in flags]
    return {
        # x86_64 and aarch64 run different kernels altogether.
        "machine": platform.machine(),
        # The marketing name tells SKUs of one design apart (clock speed, core count, cache share).
        "cpu": cpu_model(info),
        # Vendor + family/model/stepping name the microarchitecture and its revision: the same name
        # ("AMD EPYC") covers Zen 2, 3 and 4, whose cores run the same GEMM at different speeds.
        "cpu_vendor": vendor,
        "cpu_id": ident or "unknown",
        # Which kernels the runtime picks: an AVX-512 or AMX GEMM is a different code path.
        "isa": " ".join(isa) or "none",
        # How much of a student's weights stay close: the predictor's cache term is fitted to these.
        "cache": _caches(caches),
    }


def cpu_model(info: dict[str, str] | None = None) -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform reports."""
    if info is None:
        try:
            info = _cpuinfo(CPUINFO.read_text(errors="replace"))
        except OSError:
            info = {}
    for key in ("model name", "hardware", "cpu model"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine()


# ---- the host's temp folder: where the stages put the models they load ----

@contextmanager
def scratch_folder(kind: str) -> Iterator[Path]:
    """A folder `pipeline-<kind>-<pid>-*` in the system's temp folder for the models a stage loads on the device
    (a profile's exceed 1 GB). It is removed on any exception, SIGTERM included (the command line raises one for
    it); a process killed with -9 cannot remove its own, so each new one of the same kind first removes those of
    processes that are gone (remove_stale)."""
    remove_stale(kind)
    with tempfile.TemporaryDirectory(prefix=f"pipeline-{kind}-{os.getpid()}-") as tmp:
        yield Path(tmp)


def remove_stale(kind: str, root: str | Path | None = None) -> list[Path]:
    """Remove the `pipeline-<kind>-<pid>-*` folders in `root` (default: the system's temp folder) whose process
    is no longer alive; returns them. Folders without a pid (made before it was in the name), files and links are
    left alone."""
    root = Path(tempfile.gettempdir() if root is None else root)
    named = re.compile(rf"pipeline-{re.escape(kind)}-(\d+)-")
    removed = []
    for path in sorted(root.glob(f"pipeline-{kind}-*")):
        m = named.match(path.name)
        if m and path.is_dir() and not path.is_symlink() and not process_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
