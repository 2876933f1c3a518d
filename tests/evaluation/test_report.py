"""The HTML report: self-contained, parses, holds the tables, the charts and the drill-down."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from domainrag.evaluation.charts import NOT_MEASURED, chart_data, draw
from domainrag.evaluation.display import format_duration, plain
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


def test_chart_axis_starts_near_the_data_and_not_measured_is_not_zero() -> None:
    runs = [{"label": "bm25", "metrics": {"ndcg@10": 0.92, "recall@5": 0.95, "mrr@10": None}},
            {"label": "dense", "metrics": {"ndcg@10": 0.97, "recall@5": 0.99, "mrr@10": 0.0}}]
    chart = chart_data(runs, ["ndcg@10", "recall@5", "mrr@10"], "retrieval")
    assert chart.values == [[0.92, 0.95, None], [0.97, 0.99, 0.0]]  # not measured stays None, a measured 0 stays 0
    close = chart_data(runs[:1], ["ndcg@10", "recall@5"], "retrieval")
    assert close.ylim[0] == 0.9 and 0.95 < close.ylim[1] <= 1.0  # 0.92 vs 0.95 is visible
    assert "starts at 0.90" in close.ylabel
    assert chart.ylim[0] == 0.0 and chart.ylabel == "score"  # a 0 among the values: the axis starts at 0
    fig = draw(chart)
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_gid() == NOT_MEASURED]
    assert len(hatched) == 1 and hatched[0].get_hatch() == "//" and not hatched[0].get_fill()
    assert [t.get_text() for t in ax.texts].count(NOT_MEASURED) == 1
    value_labels = [t.get_text() for t in ax.texts if t.get_text() != NOT_MEASURED]
    assert sorted(value_labels) == ["0.00", "0.92", "0.95", "0.97", "0.99"]  # the 0 is labelled as a value
    assert ax.get_xlabel() == "metric" and ax.get_ylabel() == "score"


def test_durations_and_names_read_as_words(tmp_path: Path) -> None:
    assert [format_duration(s) for s in (0.42, 42.4, 83, 3725, None)] == ["0.4s", "42s", "1m 23s", "1h 02m", "-"]
    assert plain({"source": "base model", "kind": "embedding", "x": None}) == "source: base model, kind: embedding"
    result = _retrieval_result(tmp_path)
    result["metadata"]["elapsed_s"] = 83.2
    result["metadata"]["models"] = {"all-minilm-l6-v2": {"name": "all-minilm-l6-v2", "source": "base model",
                                                         "kind": "embedding", "description": "MiniLM, 384-d"}}
    result["retrieval"]["runs"][0]["seconds"] = 95.0
    page = render_html(result)
    assert "1m 23s" in page and "1m 35s" in page and "<th>duration</th>" in page and "elapsed_s" not in page
    assert "<td>all-minilm-l6-v2</td><td>base model</td><td>embedding</td>" in page
    assert "description: MiniLM, 384-d" in page
    assert "&quot;" not in page and '{"' not in page  # no JSON quoting anywhere in the report


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
