"""Parsing in worker processes: the same documents, errors and outcomes as parsing in the ingesting process,
in file order, and progress by files and by the pages of a long PDF from inside a worker."""

from __future__ import annotations

import shutil
from pathlib import Path

import docx
import pytest

from domainrag.data import sources as sources_module
from domainrag.data.sources import PAGE_BAR_MIN, load_sources, local_sources, parse_workers
from domainrag.hardware import usable_cpus


def _long_pdf(path: Path, pages: int) -> Path:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    for n in range(1, pages + 1):
        c.setFont("Helvetica", 11)
        c.drawString(72, 720, f"Page {n} of the long manual talks about valve {n}.")
        c.showPage()
    c.save()
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, outlined_pdf: Path, plain_pdf: Path) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    shutil.copy(outlined_pdf, root / "a-outlined.pdf")
    shutil.copy(plain_pdf, root / "b-plain.pdf")
    _long_pdf(root / "c-long.pdf", PAGE_BAR_MIN + 5)
    d = docx.Document()
    d.add_heading("Setup", level=1)
    d.add_paragraph("Fill the tank first.")
    d.save(root / "d.docx")
    (root / "e-broken.pdf").write_bytes(b"%PDF-1.7\nnot really")
    (root / "f.md").write_text("# Notes\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    (root / "g.jsonl").write_text('{"id": "x", "text": "fine"}\n{"id": "y"}\n')
    (root / "h.xyz").write_text("unsupported")
    return root


def _load(folder: Path, workers: int) -> tuple[list, list[str], dict[str, str], list[tuple[str, int, int]]]:
    errors: list[str] = []
    outcomes: dict[str, str] = {}
    seen: list[tuple[str, int, int]] = []
    docs = load_sources(local_sources([folder]), errors, outcomes, workers=workers,
                        progress=lambda label, done, total: seen.append((label, done, total)))
    return docs, errors, outcomes, seen


def test_workers_give_exactly_the_in_process_results(folder: Path) -> None:
    docs, errors, outcomes, seen = _load(folder, 0)
    docs2, errors2, outcomes2, seen2 = _load(folder, 3)
    assert docs2 == docs and errors2 == errors and outcomes2 == outcomes  # blocks, metadata and order included
    assert [d.doc_id for d in docs] == ["a-outlined.pdf", "b-plain.pdf", "c-long.pdf", "d.docx", "f.md", "x"]
    assert list(outcomes.values()) == ["ingested"] * 4 + ["skipped", "ingested", "warned", "skipped"]
    assert any("e-broken.pdf" in e and "not a valid PDF" in e for e in errors)
    for progress in (seen, seen2):  # files counted up to all of them; the long PDF by pages, the others not
        files = [d for label, d, _ in progress if label == "parse files"]
        assert files == sorted(files) and files[-1] == 8
        pages = [(d, t) for label, d, t in progress if label == "c-long.pdf"]
        assert pages[-1] == (PAGE_BAR_MIN + 5, PAGE_BAR_MIN + 5) and len(pages) == PAGE_BAR_MIN + 5
        assert {label for label, _, _ in progress} == {"parse files", "c-long.pdf"}


def test_default_workers_only_for_several_structured_files(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = local_sources([folder])
    monkeypatch.setenv("DOMAINRAG_PARSE_WORKERS", "")
    texts = [s for s in sources if s.path.suffix in (".md", ".jsonl", ".xyz")]
    assert parse_workers(texts) == 0 and parse_workers(sources[:1]) == 0
    assert parse_workers(sources) == 0  # five small structured files: parsed before a worker would start
    monkeypatch.setattr(sources_module, "PARALLEL_MIN_BYTES", 1000)
    assert parse_workers(sources) == min(4, usable_cpus(), 5)  # 5 files need a structured reader
    monkeypatch.setenv("DOMAINRAG_PARSE_WORKERS", "2")
    assert parse_workers(sources) == 2
    monkeypatch.setenv("DOMAINRAG_PARSE_WORKERS", "two")
    with pytest.raises(Exception, match="DOMAINRAG_PARSE_WORKERS must be a whole number"):
        parse_workers(sources)


class _Recorder:
    """A ``Meanwhile`` that records what it is told and does two units of work per file."""

    def __init__(self, fail: bool = False) -> None:
        self.docs: list[str] = []
        self.units = 0
        self.left = 0
        self.fail = fail

    def loaded(self, docs: list) -> None:
        self.docs.extend(d.doc_id for d in docs)
        self.left += 2

    def work(self) -> bool:
        if self.fail:
            raise RuntimeError("encoder broke")
        if self.left:
            self.left -= 1
            self.units += 1
        return self.left > 0


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Path:
    """The mixed folder and a 150-page PDF: files finish while that one is still being parsed."""
    root = tmp_path_factory.mktemp("mixed-slow")
    shutil.copytree(folder, root, dirs_exist_ok=True)
    _long_pdf(root / "a-very-long.pdf", 150)
    return root


def test_meanwhile_gets_every_parsed_file_while_workers_parse(slow_folder: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources_module, "usable_cpus", lambda: 2)
    crowded = _Recorder()  # two workers on two cores: no core left for the ingesting process's own work
    load_sources(local_sources([slow_folder]), [], workers=2, meanwhile=crowded)
    assert crowded.docs == [] and crowded.units == 0
    monkeypatch.setattr(sources_module, "usable_cpus", lambda: 4)
    recorder = _Recorder()
    docs = load_sources(local_sources([slow_folder]), [], workers=2, meanwhile=recorder)
    assert sorted(recorder.docs) == sorted(d.doc_id for d in docs)  # each file's documents, once, any order
    assert recorder.units > 0  # it was given time while the long file was still being parsed
    serial = _Recorder()
    load_sources(local_sources([slow_folder]), [], workers=0, meanwhile=serial)
    assert serial.docs == [] and serial.units == 0  # parsing in this process leaves no time to share


def test_a_failing_meanwhile_costs_nothing_of_the_parse(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sources_module, "usable_cpus", lambda: 4)
    errors: list[str] = []
    docs = load_sources(local_sources([folder]), errors, workers=2, meanwhile=_Recorder(fail=True))
    expected_errors: list[str] = []
    expected = load_sources(local_sources([folder]), expected_errors, workers=0)
    assert docs == expected and errors == expected_errors
    assert "encoder broke" in caplog.text
