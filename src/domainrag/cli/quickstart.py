"""domainrag quickstart: the whole loop on the shipped sample domain.

lake init → upload raw data → embedding job → SFT job → model create → index create → ingest →
app create → streamed answers with sources → base-vs-fine-tuned table (retrieval recall@5 /
nDCG@10, answer accuracy) written to the lake as JSON and HTML.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from domainrag.cli._context import command_app, progress_bar, ws
from domainrag.cli._context import console as stdout_console
from domainrag.cli.app import print_answer
from domainrag.cli.job import follow_job, job_spec
from domainrag.data.sample import read_qa, sample_paths
from domainrag.errors import DomainRagError
from domainrag.zoo import DEFAULT_EMBEDDER, DEFAULT_LLM

if TYPE_CHECKING:
    from domainrag.evaluation.result import EvalResult
    from domainrag.serving.gate import GateCalibration
    from domainrag.workspace import Workspace

app = command_app()

INDEX_FT, INDEX_BASE = "rag_vectors", "rag_vectors_base"
APP, APP_BASE = "DomainRAG", "DomainRAG-base"
LLM_FT, EMB_FT = "domain-llm-v1", "domain-embedder-v1"
DEMO_QUESTIONS = 3
RETRIEVAL_METRICS = ["recall@5", "ndcg@10", "mrr@10"]


@app.command("quickstart")
def quickstart(
    fast: Annotated[bool, typer.Option(help="fewer training steps and questions (smoke test)")] = False,
) -> None:
    """Run the whole loop on the shipped sample domain and print a base-vs-fine-tuned table."""
    run_quickstart(ws(), stdout_console, fast=fast)


def _step(console: Console, n: int, text: str) -> None:
    console.rule(f"[bold cyan]{n}. {text}")


def _run_job(ws: Workspace, console: Console, spec: Any) -> Any:
    from domainrag.training.jobs import create_job

    record = create_job(ws, spec)
    final = follow_job(record.name)
    if final.state != "succeeded":
        raise DomainRagError(
            f"quickstart job {record.name} {final.state}: {final.error}",
            hint=f"see `domainrag job logs {record.name}`",
        )
    return final


def run_quickstart(ws: Workspace, console: Console, fast: bool = False) -> EvalResult:
    """Run every step, print as it goes, write the report to the lake; returns the evaluation result."""
    from domainrag.evaluation.answer_eval import run_answer_eval
    from domainrag.evaluation.beir import RetrievalDataset
    from domainrag.evaluation.report import render_html
    from domainrag.evaluation.retrieval_eval import score_retrievers
    from domainrag.retrieval.retriever import Retriever
    from domainrag.serving.apps import AppSpec, create_app, load_app
    from domainrag.serving.models import create_model
    from domainrag.serving.rag import RagApp
    from domainrag.workspace import create_index, delete_index, ingest

    t0 = time.time()
    paths = sample_paths()
    # A quickstart is re-runnable: it starts from an empty catalogue of its own objects.
    for kind, names in (("app", [APP, APP_BASE]), ("model", [LLM_FT, EMB_FT])):
        for name in names:
            ws.catalog.delete(kind, name)  # type: ignore[arg-type]
    for idx in (INDEX_FT, INDEX_BASE):
        if ws.catalog.get("index", idx):
            delete_index(ws, idx)
    for name in (LLM_FT, EMB_FT):
        ws.lake.delete(f"models/{name}")

    _step(console, 1, "data lake")
    console.print(f"workspace {ws.settings.workspace}\nlake      {ws.lake.url()}")
    _step(console, 2, "upload the sample domain (raw/)")
    for name, src in (("sample-docs", paths.docs), ("sample-pairs", paths.pairs), ("sample-sft", paths.sft_chat)):
        url, n_files = ws.upload_dataset(src, name)
        console.print(f"{name}: {n_files} file(s) → {url}")

    _step(console, 3, f"embedding job: fine-tune {DEFAULT_EMBEDDER} on query→passage pairs")
    emb_job = _run_job(
        ws,
        console,
        job_spec(
            name="domain-embedder",
            algorithm="embedding",
            base_model=DEFAULT_EMBEDDER,
            dataset=ws.lake.url("raw/sample-pairs/pairs.jsonl"),
            hyperparameters={"epochs": 1 if fast else 2, "batch_size": 32, "learning_rate": 1e-4, "eval_fraction": 0.1},
        ),
    )
    _step(console, 4, f"SFT job: LoRA fine-tune {DEFAULT_LLM} on grounded chats")
    sft_job = _run_job(
        ws,
        console,
        job_spec(
            name="domain-llm-sft",
            algorithm="sft",
            base_model=DEFAULT_LLM,
            dataset=ws.lake.url("raw/sample-sft/sft_chat.jsonl"),
            hyperparameters={
                "epochs": 1,
                "max_steps": 12 if fast else 45,
                "batch_size": 4,
                "learning_rate": 4e-4,
                "lora_layers": 12,  # top layers only: backprop stops there
                "max_seq_len": 384,
                "eval_fraction": 0.05,
                "save_every": 20,
            },
        ),
    )

    _step(console, 5, "register models")
    for name, job in ((EMB_FT, emb_job), (LLM_FT, sft_job)):
        rec = create_model(ws, name, source="job", job_id=job.name)
        console.print(f"model {name} v{rec['version']} ({rec['kind']}) → {rec['uri']}")

    _step(console, 6, "create indexes (dimension read from each embedding model) and ingest")
    for idx, emb in ((INDEX_FT, EMB_FT), (INDEX_BASE, DEFAULT_EMBEDDER)):
        rec = create_index(ws, idx, emb, "embedded")
        report = ingest(ws, idx, [paths.docs])
        console.print(f"index {idx}: {rec['dimension']}-d ({emb}); {report.documents} docs → {report.chunks} chunks")

    _step(console, 7, "create RAG apps (temperature 0.1, strict grounding prompt)")
    retrieval = {"vector_store": "embedded", "top_k": 3, "mode": "hybrid"}
    for app, model, idx in ((APP, LLM_FT, INDEX_FT), (APP_BASE, DEFAULT_LLM, INDEX_BASE)):
        create_app(
            ws,
            AppSpec.model_validate(
                {
                    "name": app,
                    "model": model,
                    "retrieval": {**retrieval, "index": idx},
                    "generation": {"max_new_tokens": 80},
                }
            ),
        )
        console.print(f"app {app}: model {model}, index {idx}")

    _step(console, 8, f"fit {APP}'s answerability gate on the training questions (at most 5 % false refusals)")
    calibration = _fit_gate(ws, paths.qa_train, fast)
    console.print(f"gate of {APP}: signals {', '.join(calibration.features)}, threshold "
                  f"{calibration.threshold:.3f}; it answers the app's not-found text without calling the LLM "
                  "when the passages do not hold an answer")

    heldout = read_qa(paths.qa_heldout)
    answerable = [q for q in heldout if q.get("doc")]
    unanswerable = [q for q in heldout if not q.get("doc")]
    _step(console, 9, f"invoke {APP} with streaming")
    rag_ft = load_app(ws, APP)
    for q in answerable[:DEMO_QUESTIONS]:
        console.print(f"[bold]Q:[/] {q['question']}")
        console.print("[bold]A:[/] ", end="")
        print_answer(rag_ft, q["question"])

    _step(console, 10, "evaluate on held-out questions: base vs fine-tuned, and the gate")

    eval_qs = answerable[:12] + unanswerable[:2] if fast else heldout
    queries = {q["id"]: q["question"] for q in answerable}
    qrels = {q["id"]: {q["doc"]: 1} for q in answerable}
    dataset = RetrievalDataset("qa_heldout", "questions", queries, qrels, None, {"qa_heldout.jsonl": paths.qa_heldout})
    rag_base = load_app(ws, APP_BASE, with_generator=False)
    searchers: dict[str, Any] = {}
    for label, rag in (("base embedder", rag_base), ("fine-tuned embedder", rag_ft)):
        dense = Retriever(
            rag.retriever.store, rag.retriever.embedder, rag.retriever.config.model_copy(update={"mode": "dense"})
        )
        for mode, retr in (("dense", dense), ("hybrid", rag.retriever)):
            searchers[f"{label} ({mode})"] = (
                lambda text, k, r=retr: r.run(text, top_k=k),
                {"mode": mode, "index": retr.config.index},
            )
    retrieval_section = score_retrievers(searchers, dataset, RETRIEVAL_METRICS)
    base_generator = load_app(ws, APP_BASE).generator
    apps = {  # the same fine-tuned retrieval for both, so the table isolates the LLM
        "base LLM": lambda: RagApp("base LLM", rag_ft.retriever, base_generator, rag_ft.generation),
        "fine-tuned LLM": lambda: RagApp("fine-tuned LLM", rag_ft.retriever, rag_ft.generator, rag_ft.generation),
    }
    configs = {
        "base LLM": {"model": DEFAULT_LLM, "index": INDEX_FT},
        "fine-tuned LLM": {"model": LLM_FT, "index": INDEX_FT},
    }
    with progress_bar() as bar:
        task = bar.add_task("answering", total=2 * len(eval_qs))
        result = run_answer_eval(
            apps,
            eval_qs,
            dataset_files={"qa_heldout.jsonl": paths.qa_heldout},
            configs=configs,
            models={"embedder": EMB_FT, "llm": LLM_FT},
            progress=lambda label, done, total: bar.update(task, description=label, advance=1),
        )
    result.title = "domainrag quickstart: base vs fine-tuned on the sample domain"
    result.retrieval = retrieval_section
    result.gate = gate_rates(rag_ft, calibration, eval_qs, result)
    result.metadata.elapsed_s = round(time.time() - t0, 1)
    _print_tables(console, result, len(eval_qs))
    url = ws.lake.write_json("reports/quickstart.json", result.to_json())
    html_url = ws.lake.write_text("reports/quickstart.html", render_html(result))
    console.rule("[bold green]done")
    console.print(f"finished in {time.time() - t0:.0f}s. Everything it made:")
    for line in (
        f"catalogue   {ws.settings.catalog_path}",
        f"raw data    {ws.lake.url('raw')}",
        f"jobs        {ws.lake.url('jobs')} (logs, metrics.jsonl, loss.png, checkpoints, model cards)",
        f"models      {ws.lake.url('models')}",
        f"indexes     {ws.default_store_uri}",
        f"report      {html_url}  (JSON: {url})",
        f'try         domainrag app invoke {APP} --query "What does the CTL-400 weigh?"',
    ):
        console.print("  " + line)
    return result


def _fit_gate(ws: Workspace, questions: Any, fast: bool) -> GateCalibration:
    """The fine-tuned app's gate fitted on the training questions and their withheld-gold twins, from the
    retrieval signals only (no LLM call: the reader signal would double the quickstart's generation time)."""
    from domainrag.evaluation.gate_calibration import calibrate_app

    total = len(read_qa(questions))
    with progress_bar() as bar:
        task = bar.add_task("gate signals", total=min(total, 20) if fast else total)
        return calibrate_app(ws, APP, questions, 0.05, signals=("dense", "bm25"), limit=20 if fast else None,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))


def gate_rates(rag: Any, calibration: GateCalibration, questions: list[dict[str, Any]],
               result: EvalResult) -> dict[str, Any]:
    """What the gate adds to the fine-tuned LLM on the held-out questions, from its decisions on their
    passages: a question counts as refused with the gate when the gate refuses it or the LLM (in the run
    without the gate, same passages) refused it. Withheld-gold twins have no LLM answer: the gate alone."""
    from domainrag.evaluation.gate_calibration import collect_rows
    from domainrag.serving.gate import decide

    rows = collect_rows(rag, questions, withhold_gold=True, features=calibration.features)
    llm_refused = {q.id: q.results["fine-tuned LLM"].score.refused for q in result.answers.questions
                   if "fine-tuned LLM" in q.results} if result.answers else {}

    def share(flags: list[bool]) -> float | None:
        return round(sum(flags) / len(flags), 4) if flags else None

    gated = [(r, not decide(calibration, r.signals).answerable) for r in rows]
    return {
        "features": list(calibration.features), "threshold": calibration.threshold,
        "fitted_on": calibration.fitted_on,
        "false_refusal_rate": share([g or llm_refused.get(r.question_id, False)
                                     for r, g in gated if r.answerable]),
        "refusal_rate_unanswerable": share([g or llm_refused.get(r.question_id, False)
                                            for r, g in gated if not r.answerable and not r.withheld]),
        "refusal_rate_withheld_gate_only": share([g for r, g in gated if r.withheld]),
        "questions": len(questions),
    }


def _print_tables(console: Console, result: EvalResult, n_questions: int) -> None:
    table = Table(title="held-out retrieval (sample domain; relevant = source document)")
    table.add_column("system")
    for m in RETRIEVAL_METRICS:
        table.add_column(m, justify="right")
    for run in result.retrieval.runs if result.retrieval else []:
        table.add_row(run.label, *(f"{run.metrics[m]:.3f}" for m in RETRIEVAL_METRICS))
    console.print(table)
    cols = {
        "key_fact_accuracy": "accuracy (key fact)",
        "refusal_rate_unanswerable": "refusal on unanswerable",
        "token_f1": "token F1",
        "citation_precision": "citation precision",
    }
    table2 = Table(title=f"answers on {n_questions} held-out questions (retrieval: fine-tuned hybrid)")
    table2.add_column("LLM")
    for title in cols.values():
        table2.add_column(title, justify="right")
    for answer_run in result.answers.runs if result.answers else []:
        vals = [answer_run.metrics.get(k) for k in cols]
        table2.add_row(answer_run.label, *("-" if v is None else f"{v:.3f}" for v in vals))
    console.print(table2)
    if result.gate:
        gate = result.gate
        table3 = Table(title=f"fine-tuned LLM with the answerability gate ({' + '.join(gate['features'])}, "
                             "fitted on the training questions)")
        for title in ("false refusal (answerable)", "refusal on unanswerable", "refusal, gold withheld (gate)"):
            table3.add_column(title, justify="right")
        table3.add_row(*("-" if gate[k] is None else f"{gate[k]:.3f}" for k in
                         ("false_refusal_rate", "refusal_rate_unanswerable", "refusal_rate_withheld_gate_only")))
        console.print(table3)
