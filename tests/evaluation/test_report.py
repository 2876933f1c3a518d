"""The HTML report: self-contained, parses, holds the tables, the charts and the drill-down."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from domainrag.evaluation.report import render_html, write_report
from domainrag.evaluation.result import new_result

from .test_answers import QUESTIONS, ScriptedApp


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, list[dict[str, str | None]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.setdefault(tag, []).append(dict(attrs))


def _retrieval_result(tmp_path: Path) -> dict[str, Any]:
    f = tmp_path / "corpus.jsonl"
    f.write_text("{}")
    result = new_result("Retrieval <test>", {"corpus.jsonl": f}, command="domainrag eval retrieval").to_json()
    runs = [{"label": label, "config": {"mode": label, "index": "i"}, "seconds": 0.1,
             "metrics": {"ndcg@10": v, "recall@5": v}, "per_query": {"q1": {"ndcg@10": v, "recall@5": v}}}
            for label, v in (("bm25", 0.5), ("dense", 0.75))]
    hit = {"doc_id": "d1", "chunk_id": "d1::0", "score": 0.9, "relevant": True, "text": "<script>alert(1)</script>"}
    result["warnings"] = ["2 qrels row(s) name a document not in the corpus; ignored"]
    result["retrieval"] = {"dataset": {"name": "t", "format": "beir", "queries": 1, "corpus": 1, "qrels": 1},
                           "metrics": ["ndcg@10", "recall@5"], "ingest": [], "runs": runs,
                           "queries": [{"id": "q1", "text": "what?", "relevant": ["d1"],
                                        "hits": {"bm25": [hit], "dense": [hit]}}]}
    return result


def test_retrieval_report_renders(tmp_path: Path) -> None:
    page = render_html(_retrieval_result(tmp_path))
    p = _Collect()
    p.feed(page)
    p.close()
    assert {t.get("class") for t in p.tags["table"]} >= {"metrics", "configs"}
    imgs = [t["src"] for t in p.tags["img"]]
    assert len(imgs) == 1 and imgs[0].startswith("data:image/png;base64,")
    assert base64.b64decode(imgs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(p.tags["details"]) == 1
    assert "<script" not in page and "&lt;script&gt;" in page  # chunk text is escaped
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    assert '<td class="num best"' in page and "0.7500" in page  # best value per column marked
    assert "Retrieval &lt;test&gt;" in page and "name a document not in the corpus" in page


def test_answers_report_renders(tmp_path: Path) -> None:
    from domainrag.evaluation.answer_eval import run_answer_eval

    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    app = ScriptedApp({QUESTIONS[0]["question"]: "30 seconds [1]."})
    result = run_answer_eval({"app": lambda: app}, QUESTIONS, dataset_files={"q.jsonl": qfile})
    out = write_report(result, tmp_path / "sub" / "a.html")
    page = out.read_text()
    p = _Collect()
    p.feed(page)
    assert len(p.tags["details"]) == len(QUESTIONS) + 1  # + the judge prompt
    assert "not measured" in page and "RuntimeError: generator crashed" in page
    assert "Does the context support the statement? Answer yes or no." in page  # the judge prompt is stored
    assert "strict fact checker" in page  # and its system message
    assert len(p.tags["img"]) == 1


@pytest.mark.skipif(shutil.which("chromium") is None, reason="`which chromium` finds no headless Chromium")
@pytest.mark.parametrize("section", ["retrieval", "answers"])
def test_report_renders_in_headless_chromium(tmp_path: Path, section: str) -> None:
    from domainrag.evaluation.answer_eval import run_answer_eval

    if section == "retrieval":
        result = _retrieval_result(tmp_path)
    else:
        qfile = tmp_path / "q.jsonl"
        qfile.write_text("x")
        app = ScriptedApp({QUESTIONS[0]["question"]: "30 seconds [1]."})
        result = run_answer_eval({"app": lambda: app}, QUESTIONS, dataset_files={"q.jsonl": qfile})
    page = write_report(result, tmp_path / "r.html")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert 'class="metrics"' in dom and "data:image/png;base64," in dom
    assert f"<section id=\"{section}\">" in dom  # the browser parsed the page into its sections
