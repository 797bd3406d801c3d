"""The documents a user reads: every relative link resolves, every benchmark result is indexed."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target) with an optional #anchor


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), RESULTS / "README.md"]


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    targets = [t for t in LINK.findall(doc.read_text()) if not re.match(r"[a-z]+:", t)]  # not http:, mailto:
    missing = [t for t in targets if not (doc.parent / t).exists()]
    assert not missing, f"{doc.name} links to missing files: {missing}"


def test_every_result_is_in_the_index():
    indexed = set(LINK.findall((RESULTS / "README.md").read_text()))
    files = {p.name for p in RESULTS.glob("*.md") if p.name != "README.md"}
    assert files and files <= indexed, f"not in benchmarks/results/README.md: {sorted(files - indexed)}"
