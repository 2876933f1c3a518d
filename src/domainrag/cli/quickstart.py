"""``domainrag quickstart``: the whole loop on the shipped sample domain.

lake init → upload raw data → embedding job → SFT job → model create → index create → ingest →
app create → streamed answers with sources → base-vs-fine-tuned table (retrieval recall@5 /
nDCG@10, answer accuracy) written to the lake as JSON and HTML.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from domainrag.data.sample import read_qa, sample_paths
from domainrag.workspace import Workspace
from domainrag.zoo import DEFAULT_EMBEDDER, DEFAULT_LLM

INDEX_FT, INDEX_BASE = "rag_vectors", "rag_vectors_base"
APP, APP_BASE = "DomainRAG", "DomainRAG-base"
LLM_FT, EMB_FT = "domain-llm-v1", "domain-embedder-v1"
DEMO_QUESTIONS = 3


def _step(console: Console, n: int, text: str) -> None:
    console.rule(f"[bold cyan]{n}. {text}")


def _run_job(ws: Workspace, console: Console, spec: Any) -> dict[str, Any]:
    from domainrag.cli.main import _follow
    from domainrag.training.jobs import create_job

    record = create_job(ws, spec)
    final = _follow(record["name"])
    if final["state"] != "succeeded":
        from domainrag.errors import DomainRagError

        raise DomainRagError(f"quickstart job {record['name']} {final['state']}: {final.get('error')}",
                             hint=f"see `domainrag job logs {record['name']}`")
    return final


def run_quickstart(ws: Workspace, console: Console, fast: bool = False) -> dict[str, Any]:
    from domainrag.cli.main import print_answer
    from domainrag.evaluation.answers import judge_answer
    from domainrag.evaluation.retrieval import evaluate_retriever
    from domainrag.index.manage import create_index, ingest
    from domainrag.serving.apps import AppSpec, create_app, load_app
    from domainrag.serving.models import create_model
    from domainrag.training.jobs import JobSpec

    t0 = time.time()
    paths = sample_paths()
    # A quickstart is re-runnable: it starts from an empty catalogue of its own objects.
    for kind, names in (("app", [APP, APP_BASE]), ("model", [LLM_FT, EMB_FT])):
        for name in names:
            ws.catalog.delete(kind, name)  # type: ignore[arg-type]
    for idx in (INDEX_FT, INDEX_BASE):
        if ws.catalog.get("index", idx):
            from domainrag.index.manage import delete_index

            delete_index(ws, idx)
    for name in (LLM_FT, EMB_FT):
        ws.lake.delete(f"models/{name}")

    _step(console, 1, "data lake")
    console.print(f"workspace {ws.settings.workspace}\nlake      {ws.lake.url()}")
    _step(console, 2, "upload the sample domain (raw/)")
    for name, src in (("sample-docs", paths.docs), ("sample-pairs", paths.pairs), ("sample-sft", paths.sft_chat)):
        keys = ws.lake.upload(src, f"raw/{name}" + ("" if src.is_dir() else f"/{src.name}"))
        ws.catalog.put("dataset", name, {"uri": ws.lake.url(f"raw/{name}"), "files": len(keys)})
        console.print(f"{name}: {len(keys)} file(s) → {ws.lake.url(f'raw/{name}')}")

    _step(console, 3, f"embedding job: fine-tune {DEFAULT_EMBEDDER} on query→passage pairs")
    emb_job = _run_job(ws, console, JobSpec(
        name="domain-embedder", algorithm="embedding", base_model=DEFAULT_EMBEDDER,
        dataset=ws.lake.url("raw/sample-pairs/pairs.jsonl"),
        hyperparameters={"epochs": 1 if fast else 3, "batch_size": 32, "learning_rate": 1e-4, "eval_fraction": 0.1},
    ))
    _step(console, 4, f"SFT job: LoRA fine-tune {DEFAULT_LLM} on grounded chats")
    sft_job = _run_job(ws, console, JobSpec(
        name="domain-llm-sft", algorithm="sft", base_model=DEFAULT_LLM,
        dataset=ws.lake.url("raw/sample-sft/sft_chat.jsonl"),
        hyperparameters={"epochs": 1, "max_steps": 12 if fast else 70, "batch_size": 4, "learning_rate": 3e-4,
                         "max_seq_len": 384, "eval_fraction": 0.05, "save_every": 20},
    ))

    _step(console, 5, "register models")
    for name, job in ((EMB_FT, emb_job), (LLM_FT, sft_job)):
        rec = create_model(ws, name, source="job", job_id=job["name"])
        console.print(f"model {name} v{rec['version']} ({rec['kind']}) → {rec['uri']}")

    _step(console, 6, "create indexes (dimension read from each embedding model) and ingest")
    for idx, emb in ((INDEX_FT, EMB_FT), (INDEX_BASE, DEFAULT_EMBEDDER)):
        rec = create_index(ws, idx, emb, "embedded")
        report = ingest(ws, idx, [paths.docs])
        console.print(f"index {idx}: {rec['dimension']}-d ({emb}); {report.documents} docs → {report.chunks} chunks")

    _step(console, 7, "create RAG apps (temperature 0.1, strict grounding prompt)")
    retrieval = {"vector_store": "embedded", "top_k": 3, "mode": "hybrid"}
    for app, model, idx in ((APP, LLM_FT, INDEX_FT), (APP_BASE, DEFAULT_LLM, INDEX_BASE)):
        create_app(ws, AppSpec.model_validate({"name": app, "model": model, "retrieval": {**retrieval, "index": idx},
                                               "generation": {"max_new_tokens": 80}}))
        console.print(f"app {app}: model {model}, index {idx}")

    heldout = read_qa(paths.qa_heldout)
    answerable = [q for q in heldout if q.get("doc")]
    unanswerable = [q for q in heldout if not q.get("doc")]
    _step(console, 8, f"invoke {APP} with streaming")
    rag_ft = load_app(ws, APP)
    for q in answerable[:DEMO_QUESTIONS]:
        console.print(f"[bold]Q:[/] {q['question']}")
        console.print("[bold]A:[/] ", end="")
        print_answer(rag_ft, q["question"])

    _step(console, 9, "evaluate on held-out questions: base vs fine-tuned")
    eval_qs = answerable[:12] + unanswerable[:2] if fast else heldout
    queries = {q["id"]: q["question"] for q in answerable}
    qrels = {q["id"]: {q["doc"]: 1} for q in answerable}
    rag_base = load_app(ws, APP_BASE, with_generator=False)
    retrieval_rows: dict[str, dict[str, float]] = {}
    for label, rag in (("base embedder", rag_base), ("fine-tuned embedder", rag_ft)):
        dense = rag.retriever.config.model_copy(update={"mode": "dense"})
        from domainrag.retrieval.retriever import Retriever

        for mode, retr in (("dense", Retriever(rag.retriever.store, rag.retriever.embedder, dense)),
                           ("hybrid", rag.retriever)):
            metrics, _ = evaluate_retriever(lambda text, r=retr: r.run(text, top_k=10), queries, qrels,
                                            ["recall@5", "ndcg@10", "mrr@10"])
            retrieval_rows[f"{label} ({mode})"] = metrics
    base_llm = load_app(ws, APP_BASE)
    from domainrag.serving.rag import RagApp

    answer_rows: dict[str, dict[str, float]] = {}
    drill: list[dict[str, Any]] = []
    from rich.progress import Progress

    for label, generator in (("base LLM", base_llm.generator), ("fine-tuned LLM", rag_ft.generator)):
        rag = RagApp(label, rag_ft.retriever, generator, rag_ft.generation)  # same retrieval for both LLMs
        correct = refused_ok = 0
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"answering with {label}", total=len(eval_qs))
            for q in eval_qs:
                ans = rag.invoke(q["question"])
                v = judge_answer(ans.answer, q["answer"], q.get("short_answer"))
                correct += v.correct
                refused_ok += v.correct and not q.get("doc")
                drill.append({"model": label, "id": q["id"], "question": q["question"], "answer": ans.answer,
                              "reference": q["answer"], "correct": v.correct,
                              "sources": [r["document"] for r in ans.references]})
                bar.advance(task)
        n_ans = sum(1 for q in eval_qs if q.get("doc"))
        n_un = len(eval_qs) - n_ans
        answer_rows[label] = {"accuracy": correct / len(eval_qs),
                              "answerable_acc": (correct - refused_ok) / max(n_ans, 1),
                              "refusal_acc": refused_ok / max(n_un, 1)}

    table = Table(title="held-out evaluation (sample domain)")
    table.add_column("system")
    for m in ("recall@5", "ndcg@10", "mrr@10"):
        table.add_column(m, justify="right")
    for label, m in retrieval_rows.items():
        table.add_row(label, *(f"{m[k]:.3f}" for k in ("recall@5", "ndcg@10", "mrr@10")))
    console.print(table)
    table2 = Table(title=f"answer accuracy on {len(eval_qs)} held-out questions (retrieval: fine-tuned hybrid)")
    for c in ("LLM", "accuracy", "answerable", "refusal (unanswerable)"):
        table2.add_column(c, justify="right" if c != "LLM" else "left")
    for label, m in answer_rows.items():
        table2.add_row(label, f"{m['accuracy']:.3f}", f"{m['answerable_acc']:.3f}", f"{m['refusal_acc']:.3f}")
    console.print(table2)
    results = {"retrieval": retrieval_rows, "answers": answer_rows, "questions": drill,
               "seconds": round(time.time() - t0, 1), "fast": fast}
    url = ws.lake.write_json("reports/quickstart.json", results)
    html_url = _write_html(ws, results)
    console.rule("[bold green]done")
    console.print(f"finished in {results['seconds']:.0f}s. Everything it made:")
    for line in (f"catalogue   {ws.settings.catalog_path}", f"raw data    {ws.lake.url('raw')}",
                 f"jobs        {ws.lake.url('jobs')} (logs, metrics.jsonl, loss.png, checkpoints, model cards)",
                 f"models      {ws.lake.url('models')}", f"indexes     {ws.default_store_uri}",
                 f"report      {html_url}  (JSON: {url})",
                 f"try         domainrag app invoke {APP} --query \"What does the CTL-400 weigh?\""):
        console.print("  " + line)
    return results


def _write_html(ws: Workspace, results: dict[str, Any]) -> str:
    """A small self-contained HTML page with the two tables and the per-question drill-down."""
    import html

    def table(rows: dict[str, dict[str, float]]) -> str:
        cols = list(next(iter(rows.values())).keys())
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["system", *cols])
        body = "".join("<tr><td>" + html.escape(k) + "</td>" + "".join(f"<td>{v[c]:.3f}</td>" for c in cols) + "</tr>"
                       for k, v in rows.items())
        return f"<table><tr>{head}</tr>{body}</table>"

    qs = "".join(
        f"<tr class={'ok' if q['correct'] else 'bad'}><td>{html.escape(q['model'])}</td><td>{html.escape(q['question'])}</td>"
        f"<td>{html.escape(q['answer'])}</td><td>{html.escape(q['reference'])}</td>"
        f"<td>{html.escape(', '.join(q['sources']))}</td></tr>" for q in results["questions"])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>domainrag quickstart report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}.ok{{background:#e8f7e8}}.bad{{background:#fbeaea}}</style>
</head><body><h1>domainrag quickstart</h1><p>{results['seconds']}s</p>
<h2>Retrieval (held-out questions, relevant = source document)</h2>{table(results['retrieval'])}
<h2>Answers</h2>{table(results['answers'])}
<h2>Per question</h2><table><tr><th>LLM</th><th>question</th><th>answer</th><th>reference</th><th>sources</th></tr>{qs}</table>
</body></html>"""
    ws.lake.write_text("reports/quickstart.html", page)
    return ws.lake.url("reports/quickstart.html")
