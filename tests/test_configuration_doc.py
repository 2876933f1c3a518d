"""docs/configuration.md lists exactly the DOMAINRAG_* environment variables the code reads."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bDOMAINRAG_[A-Z0-9_]*[A-Z0-9]\b")


def _table_names() -> set[str]:
    """Variable names in the first column of the environment-variable table."""
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `DOMAINRAG_")]
    return {NAME.search(row.split("|")[1]).group(0) for row in rows}  # type: ignore[union-attr]


def test_every_variable_the_code_reads_is_in_the_table_and_no_other() -> None:
    in_code = {m for path in (REPO / "src").rglob("*.py") for m in NAME.findall(path.read_text(encoding="utf-8"))}
    table = _table_names()
    assert in_code, "no DOMAINRAG_ names found: the pattern or the source path is wrong"
    assert not in_code - table, f"read by the code but missing from docs/configuration.md: {sorted(in_code - table)}"
    assert not table - in_code, f"in docs/configuration.md but read nowhere: {sorted(table - in_code)}"


def test_readme_links_the_configuration_page() -> None:
    assert "docs/configuration.md" in (REPO / "README.md").read_text(encoding="utf-8")
