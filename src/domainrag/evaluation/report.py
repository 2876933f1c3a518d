"""Self-contained HTML report of an evaluation result (no CDN, no JavaScript).

Renders an :class:`~domainrag.evaluation.result.EvalResult` or its saved JSON layout (so files
written by earlier versions render too): run metadata, each configuration, metric tables (best
value per column in bold), bar charts (matplotlib PNGs embedded as base64, see charts.py) and a per-question
drill-down in ``<details>`` elements.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from domainrag.evaluation.answers import LOWER_IS_BETTER
from domainrag.evaluation.charts import bar_chart
from domainrag.evaluation.display import format_duration, plain
from domainrag.evaluation.result import EvalResult

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
vertical-align:top;text-align:left}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.best{font-weight:bold}.na{color:#999;font-style:italic}.ok{background:#e7f6e7}.bad{background:#fbe9e9}
.warn{background:#fff6d6;border:1px solid #e8d58a;padding:.5em 1em}details{border:1px solid #ddd;margin:.3em 0;
padding:.3em .6em}summary{cursor:pointer}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em;font-size:12px}
.badge{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px;margin-right:4px;background:#eee}
.badge.ok{background:#bfe8bf}.badge.bad{background:#f3c0c0}.muted{color:#666;font-size:12px}img.chart{max-width:100%}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return '<span class="na">not measured</span>'
    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))


def _kv_table(rows: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _config_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Settings as rows, configurations as columns (stays narrow however many settings there are)."""
    keys: list[str] = []
    for r in runs:
        keys.extend(k for k in r.get("config", {}) if k not in keys)
    head = "".join(f"<th>{escape(str(r['label']))}</th>" for r in runs)
    rows = [f"<tr><th>{escape(k)}</th>" + "".join(f"<td>{escape(plain(r['config'].get(k)))}</td>" for r in runs)
            + "</tr>" for k in keys]
    rows.append("<tr><th>duration</th>" + "".join(f"<td class=num>{format_duration(r.get('seconds'))}</td>"
                                                  for r in runs) + "</tr>")
    return f'<table class="configs"><tr><th>setting</th>{head}</tr>{"".join(rows)}</table>'


def metric_table(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """Metrics as rows, configurations as columns; the best value of each row is bold."""
    head = "".join(f"<th>{escape(str(r['label']))}</th>" for r in runs)
    rows = []
    for m in metrics:
        vals = [r["metrics"].get(m) for r in runs if r["metrics"].get(m) is not None]
        best = (min(vals) if m in LOWER_IS_BETTER else max(vals)) if vals and len(runs) > 1 else None
        cells = []
        for r in runs:
            v = r["metrics"].get(m)
            status = (r.get("status") or {}).get(m)
            cls = "num best" if v is not None and v == best else "num"
            cells.append(f'<td class="{cls}" title="{escape(status or "")}">{_fmt(v)}</td>')
        rows.append(f"<tr><th>{escape(m)}</th>{''.join(cells)}</tr>")
    return f'<table class="metrics"><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>'


def _img(b64: str, alt: str) -> str:
    return f'<img class="chart" alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def _hits_table(hits_by_run: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "doc_id") -> str:
    rows = []
    for label, hits in hits_by_run.items():
        for rank, h in enumerate(hits, start=1):
            cls = ' class="ok"' if h.get("relevant") else ""
            rows.append(f"<tr{cls}><td>{escape(label)}</td><td class=num>{rank}</td><td>{escape(str(h[key]))}</td>"
                        f"<td class=num>{h.get('score', 0):.4f}</td><td>{escape(str(h.get('text', '')))}</td></tr>")
    if not rows:
        return '<p class="muted">no chunks retrieved</p>'
    return ("<table><tr><th>configuration</th><th>rank</th><th>document</th><th>score</th><th>chunk excerpt</th></tr>"
            + "".join(rows) + "</table>")


def _retrieval_section(sec: Mapping[str, Any]) -> str:
    runs, metrics = sec["runs"], sec["metrics"]
    ds = sec["dataset"]
    out = ["<section id=retrieval><h2>Retrieval</h2>",
           f"<p>{ds['queries']} queries, {ds['qrels']} relevance judgements"
           + (f", corpus of {ds['corpus']} documents" if ds.get("corpus") is not None else "")
           + f" ({escape(ds['format'])} format). Scored at document level (a document's best-ranked chunk) "
           "by trec_eval.</p>",
           "<h3>Configurations</h3>", _config_table(runs),
           "<h3>Metrics</h3>", metric_table(runs, metrics),
           _img(bar_chart(runs, metrics, "retrieval"), "retrieval metrics chart")]
    if sec.get("ingest"):
        out += ["<h3>Ingestion</h3>", "<table><tr><th>index</th><th>embedding model</th><th>documents</th>"
                "<th>chunks</th><th>written</th><th>chunk words / overlap</th></tr>"
                + "".join(f"<tr><td>{escape(i['index'])}</td><td>{escape(i['embedding_model'])}</td>"
                          f"<td class=num>{i['documents']}</td><td class=num>{i['chunks']}</td>"
                          f"<td class=num>{i['written']}</td><td>{i['max_words']} / {i['overlap_words']}</td></tr>"
                          for i in sec["ingest"]) + "</table>"]
    first = metrics[0]
    out.append(f"<h3>Per query</h3><p class=muted>{escape(first)} per configuration in each summary; "
               "relevant documents highlighted.</p>")
    for q in sec["queries"]:
        badges = "".join(
            f'<span class="badge {"ok" if r["per_query"].get(q["id"], {}).get(first, 0) > 0 else "bad"}">'
            f'{escape(r["label"])} {r["per_query"].get(q["id"], {}).get(first, 0.0):.2f}</span>' for r in runs)
        out.append(f"<details><summary>{badges} <b>{escape(q['id'])}</b> {escape(q['text'])}</summary>"
                   f"<p>relevant: {escape(', '.join(q['relevant']))}</p>{_hits_table(q['hits'])}</details>")
    out.append("</section>")
    return "\n".join(out)


def _answer_block(label: str, e: Mapping[str, Any]) -> str:
    s = e.get("score", {})
    badges = [("correct" if e.get("correct") else "wrong", bool(e.get("correct")))]
    if e.get("error"):
        badges.append(("error", False))
    if s.get("refused"):
        badges.append(("refused", not s.get("answerable")))
    for key, name in (("exact", "EM"), ("f1", "F1"), ("key_fact", "key fact"), ("label_correct", "label"),
                      ("lexical_support", "lexical support"), ("faithfulness", "faithfulness")):
        if s.get(key) is not None:
            badges.append((f"{name} {s[key]:.2f}", s[key] >= 0.5))
    if s.get("label"):
        badges.append((f"predicted label: {s['label']}", bool(s.get("label_correct"))))
    if s.get("cited"):
        badges.append((f"citations {s.get('cited_good', 0)}/{s['cited']} good", s.get("cited_good") == s["cited"]))
    html_badges = "".join(f'<span class="badge {"ok" if ok else "bad"}">{escape(t)}</span>' for t, ok in badges)
    body = f"<pre>{escape(e['error'])}</pre>" if e.get("error") else f"<pre>{escape(str(e.get('answer') or ''))}</pre>"
    detail = s.get("faithfulness_detail")
    if detail:
        body += f"<p class=muted>judge: {escape(json.dumps(detail))}</p>"
    passages = [{**p, "relevant": False} for p in e.get("passages", [])]
    return f"<h4>{escape(label)}</h4><p>{html_badges}</p>{body}{_hits_table({label: passages})}"


def _answers_section(sec: Mapping[str, Any]) -> str:
    runs, metrics = sec["runs"], sec["metrics"]
    ds = sec["dataset"]
    judge = sec.get("judge") or {}
    shown = [m for m in metrics if any(r["metrics"].get(m) is not None for r in runs) or m == "faithfulness"]
    chart_metrics = [m for m in shown if m not in LOWER_IS_BETTER]
    out = ["<section id=answers><h2>Answers</h2>",
           f"<p>{ds['questions']} questions ({ds['answerable']} answerable, {ds['unanswerable']} unanswerable).</p>",
           "<h3>Configurations</h3>", _config_table(runs),
           "<h3>Metrics</h3>", metric_table(runs, shown),
           "<p class=muted>key_fact_accuracy: the short answer appears in the answer. label_accuracy: yes/no/maybe "
           "predicted by the answer's first label word. citation_precision: explicitly cited passages that belong to "
           "a gold document or contain the short answer. context_hit_rate: a gold document is among the passages "
           "the app retrieved (separates retrieval misses from generation misses). lexical_support is a lexical "
           "heuristic (share of answer sentences with ≥60% of their content words in the cited passages), "
           "<b>not</b> faithfulness. Errors count as wrong answers.</p>",
           _img(bar_chart(runs, chart_metrics, "answers"), "answer metrics chart"),
           "<h3>Faithfulness judge</h3>"]
    if judge.get("configured"):
        out.append(_kv_table({k: v for k, v in judge.items() if k not in ("configured", "system", "prompt")}))
    else:
        out.append(f"<p class=na>{escape(judge.get('status', 'not measured'))}</p>")
    out.append("<p class=muted>faithfulness: share of answer sentences the judge finds supported by the passages "
               "the answer cites (all passages it was given when it cites none); asked once per sentence.</p>")
    prompt = (f"[system]\n{judge['system']}\n\n[user]\n" if judge.get("system") else "") + judge.get("prompt", "")
    out.append(f"<details><summary>judge prompt</summary><pre>{escape(prompt)}</pre></details>")
    out.append("<h3>Per question</h3>")
    for q in sec["questions"]:
        badges = "".join(f'<span class="badge {"ok" if q["results"].get(r["label"], {}).get("correct") else "bad"}">'
                         f'{escape(r["label"])}</span>' for r in runs)
        ref = _kv_table({"reference": q.get("reference"), "short answer": q.get("short_answer"),
                         "gold documents": ", ".join(q.get("gold") or []) or "none (unanswerable)"})
        blocks = "".join(_answer_block(label, e) for label, e in q["results"].items())
        out.append(f"<details><summary>{badges} <b>{escape(q['id'])}</b> {escape(q['question'])}</summary>"
                   f"{ref}{blocks}</details>")
    out.append("</section>")
    return "\n".join(out)


def _model_row(name: str, info: Any) -> str:
    """One model of the metadata: its name and how it resolved, as words (no JSON quotes or braces)."""
    info = info if isinstance(info, Mapping) else {"source": info}
    details = {k: v for k, v in info.items() if k not in ("name", "source", "kind", "version") and v is not None}
    cells = [name, plain(info.get("source")), plain(info.get("kind")), plain(info.get("version")), plain(details)]
    return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def render_html(result: EvalResult | Mapping[str, Any]) -> str:
    """The whole report page for one result (a record, or its JSON layout)."""
    if isinstance(result, EvalResult):
        result = result.to_json()
    meta = result.get("metadata", {})
    title = str(result.get("title") or "domainrag evaluation")
    files = "".join(f"<tr><td>{escape(n)}</td><td>{escape(f['path'])}</td>"
                    f"<td><code>{escape(f['sha256'])}</code></td></tr>"
                    for n, f in (meta.get("dataset_files") or {}).items())
    models = "".join(_model_row(n, info) for n, info in (meta.get("models") or {}).items())
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>",
             _kv_table({**{k: meta.get(k) for k in ("created_at", "command", "domainrag_version", "python",
                                                    "platform")},
                        "elapsed": format_duration(meta.get("elapsed_s"))}),
             f"<h3>Data</h3><table><tr><th>file</th><th>path</th><th>sha256</th></tr>{files}</table>"]
    if models:
        parts.append(f"<h3>Models</h3><table class=models><tr><th>name</th><th>source</th><th>kind</th><th>version</th>"
                     f"<th>details</th></tr>{models}</table>")
    if result.get("warnings"):
        parts.append('<div class="warn"><b>Warnings</b><ul>'
                     + "".join(f"<li>{escape(w)}</li>" for w in result["warnings"]) + "</ul></div>")
    if result.get("retrieval"):
        parts.append(_retrieval_section(result["retrieval"]))
    if result.get("answers"):
        parts.append(_answers_section(result["answers"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: EvalResult | Mapping[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(result), encoding="utf-8")
    return p
