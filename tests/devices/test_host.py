"""The processor part of a fingerprint, read from /proc/cpuinfo and sysfs texts of real machines."""

from pathlib import Path

from pipeline.devices.host import cpu_fingerprint
from pipeline.latency import fingerprint_hash

ZEN = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: {model}
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 {extra}

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: something else entirely
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp sve
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1
"""


def caches(root: Path, sizes: dict[tuple[str, str], str]) -> Path:
    for i, ((level, kind), size) in enumerate(sizes.items()):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    return root


def sizes(l2: str) -> dict[tuple[str, str], str]:
    return {("1", "Data"): "32K", ("1", "Instruction"): "32K", ("2", "Unified"): l2, ("3", "Unified"): "32768K"}


def fp_of(tmp_path: Path, text: str, name: str, sizes: dict | None = None) -> dict[str, str]:
    info = tmp_path / f"{name}.cpuinfo"
    info.write_text(text)
    return cpu_fingerprint(info, caches(tmp_path / name, sizes or {}))


def test_two_epycs_of_one_name_are_told_apart(tmp_path):
    """The machine that measured the shipped table and an AVX2-only Zen 3 both read 'AMD EPYC'."""
    zen3 = fp_of(tmp_path, ZEN.format(model=1, extra=""), "zen3", sizes(l2="512K"))
    zen4 = fp_of(tmp_path, ZEN.format(model=17, extra="avx512f avx512bw avx512vl avx512_vnni avx512_bf16"), "zen4",
                 sizes(l2="1024K"))
    assert zen3["cpu"] == zen4["cpu"] == "AMD EPYC" and zen3["cpu_vendor"] == "AuthenticAMD"
    assert zen3["cpu_id"] == "family 25 model 1 stepping 1" and zen4["cpu_id"] == "family 25 model 17 stepping 1"
    assert zen3["isa"] == "sse4_2 avx avx2 fma"  # the flags kernels dispatch on, in a fixed order
    assert zen4["isa"] == "sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16"
    assert zen3["cache"] == "L1d 32K, L1i 32K, L2 512K, L3 32768K"
    assert fingerprint_hash(zen3) != fingerprint_hash(zen4)
    # only the first processor's stanza is read, and flags that kernels ignore change nothing
    noisy = fp_of(tmp_path, ZEN.format(model=1, extra="new_mitigation_flag"), "zen3b", sizes(l2="512K"))
    assert noisy == zen3


def test_arm_is_named_by_implementer_and_part(tmp_path):
    fp = fp_of(tmp_path, GRAVITON, "graviton3")
    assert fp["cpu_vendor"] == "0x41" and fp["cpu_id"] == "part 0xd40 variant 0x1 revision 1"
    assert fp["isa"] == "asimd asimddp fphp asimdhp sve"
    assert fp["cache"] == "unknown"  # no sysfs caches: said so, not guessed


def test_no_cpuinfo_is_unknown_not_a_crash(tmp_path):
    fp = cpu_fingerprint(tmp_path / "absent", tmp_path / "absent-caches")
    assert fp["cpu_vendor"] == "unknown" and fp["cpu_id"] == "unknown" and fp["isa"] == "none"
    assert fp["cpu"] and fp["machine"] is not None


def test_binary_cpuinfo_is_not_a_crash(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_bytes(bytes(range(256)) * 4)
    assert cpu_fingerprint(info, tmp_path / "none")["cpu_id"] == "unknown"
