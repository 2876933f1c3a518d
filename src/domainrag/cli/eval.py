"""domainrag eval: measure retrieval and answer accuracy on a data set, compare configurations.

Exit codes: 0 ok, 1 a --fail-under gate failed or the evaluation could not run (missing index, model or
file), 2 a usage error (printed by the main CLI, see _context.exit_code).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from domainrag.cli._context import (
    OptionError,
    command_app,
    console,
    err_console,
    labelled_progress,
    print_rich,
    store_option,
    ws,
)
from domainrag.errors import DomainRagError

if TYPE_CHECKING:
    from domainrag.evaluation.result import AnswerRun, EvalResult, RetrievalRun

app = command_app("eval", "Evaluate retrieval and answers on a data set; write HTML/JSON reports.")

CONFIG_HELP = ("configuration to compare, repeatable: MODE[:EMBEDDING_MODEL][@INDEX][+rerank:RERANKER[,KEY=VALUE...]] "
               "with MODE bm25 | dense | hybrid, or app:NAME. 'dense:M' uses embedding model M on its own index "
               "<index>__<m> (built by --ingest); '@INDEX' names an existing index; '+rerank:R' rescores the top "
               "chunks with the registered reranker R, settings fusion=replace|rrf, top_n=N (default 20), "
               "retrieval_weight=W (rrf), e.g. hybrid+rerank:R,fusion=rrf; 'app:NAME' scores the app's whole "
               "retrieval pipeline, reranker included. Default: bm25, dense, hybrid")
FailUnder = Annotated[list[str] | None, typer.Option("--fail-under", help="METRIC=MIN, repeatable: exit 1 when any "
                                                     "configuration scores below (e.g. ndcg@10=0.6)")]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="write a self-contained HTML report here")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="write the full result as JSON here")]


def _thresholds(items: Sequence[str], allowed: Sequence[str]) -> dict[str, float]:
    from domainrag.cli.eval_options import parse_fail_under
    from domainrag.evaluation.spec import validate_thresholds

    parsed = parse_fail_under(items)
    try:
        return validate_thresholds(parsed, allowed)
    except DomainRagError as exc:
        raise OptionError(f"--fail-under: {exc.message}", hint=exc.hint) from exc


def _print_metrics(runs: Sequence[RetrievalRun | AnswerRun], metrics: Sequence[str], title: str) -> None:
    """Metrics as rows and configurations as columns: stays readable in 80 columns."""
    table = Table(title=title)
    table.add_column("metric")
    for r in runs:
        table.add_column(r.label, justify="right", overflow="fold")
    for m in metrics:
        table.add_row(m, *("n/m" if r.metrics.get(m) is None else f"{r.metrics[m]:.4f}" for r in runs))
    print_rich(table)


def _finish(result: EvalResult, runs: Sequence[RetrievalRun | AnswerRun], report: Path | None,
            json_out: Path | None, thresholds: dict[str, float]) -> None:
    from domainrag.evaluation.report import write_report
    from domainrag.evaluation.spec import check_thresholds

    if json_out:
        console.print(f"JSON   {result.write_json(json_out)}")
    if report:
        console.print(f"report {write_report(result, report)}")
    failures = check_thresholds(runs, thresholds)
    for f in failures:
        err_console.print(f"[bold red]below threshold:[/] {f}")
    if failures:
        raise typer.Exit(1)


@app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Option(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) "
                                               "or a questions .jsonl (id, question, doc)")],
    index: Annotated[str | None, typer.Option(help="index to evaluate (created by --ingest when missing); not "
                                                   "needed when every --config is app:NAME")] = None,
    config: Annotated[list[str] | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    ingest: Annotated[bool, typer.Option(help="create the index(es) and ingest corpus.jsonl first")] = False,
    embedding_model: Annotated[str | None, typer.Option(help="embedding model of --index when --ingest creates it "
                                                              "(default all-minilm-l6-v2)")] = None,
    store: Annotated[str, typer.Option(help="store of indexes created by --ingest")] = "embedded",
    split: Annotated[str, typer.Option(help="qrels split of a BEIR folder")] = "test",
    metric: Annotated[list[str] | None, typer.Option("--metric", help="metric, repeatable (ndcg@k, recall@k, "
                                                      "precision@k, mrr@k, map); default: nDCG@10, recall@1/5/10/100, "
                                                      "MRR@10, MAP")] = None,
    depth: Annotated[int | None, typer.Option(min=1, help="chunks fetched per query (default 2 × largest "
                                                          "cut-off)")] = None,
    max_words: Annotated[int, typer.Option(min=1, help="chunk size in words when ingesting")] = 120,
    overlap_words: Annotated[int, typer.Option(min=0, help="chunk overlap in words when ingesting")] = 20,
    limit: Annotated[int | None, typer.Option(help="evaluate only the first N queries")] = None,
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    fail_under: FailUnder = None,
) -> None:
    """Score retrieval configurations (searches, rerankers, apps) by nDCG@10, recall@k, MRR@10, MAP on labelled data."""
    from domainrag.cli.eval_options import RETRIEVAL_FLAGS, build_spec, parse_config
    from domainrag.evaluation.beir import load_retrieval_dataset
    from domainrag.evaluation.retrieval_eval import run_retrieval_eval
    from domainrag.evaluation.spec import RetrievalEvalSpec

    options = {"configs": [parse_config(c) for c in config]} if config else {}
    if metric:
        options["metrics"] = metric
    spec = build_spec(RetrievalEvalSpec, RETRIEVAL_FLAGS, index=index, ingest=ingest, embedding_model=embedding_model,
                      store=store_option(store), depth=depth, max_words=max_words, overlap_words=overlap_words,
                      limit=limit, **options)
    thresholds = _thresholds(fail_under or [], spec.metrics)
    data = load_retrieval_dataset(dataset, split)
    bar, update = labelled_progress()
    with bar:
        result = run_retrieval_eval(ws(), data, spec, progress=update)
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    sec = result.retrieval
    assert sec is not None
    _print_metrics(sec.runs, spec.metrics, f"retrieval — {sec.dataset.name} ({sec.dataset.queries} queries)")
    _finish(result, sec.runs, report, json_out, thresholds)


@app.command("answers")
def eval_answers(
    app_names: Annotated[list[str], typer.Option("--app", help="RAG app to evaluate, repeatable")],
    dataset: Annotated[Path, typer.Option(help="questions .jsonl: id, question, answer, optional short_answer, "
                                               "doc (null = unanswerable)")],
    no_retrieval: Annotated[bool, typer.Option("--no-retrieval", help="also ask each app's model without "
                                               "retrieval (question only), as a run labelled 'APP (no retrieval)'"
                                               )] = False,
    judge_model: Annotated[str | None, typer.Option(help="faithfulness judge: an LLM of the catalogue (or a base "
                                                         "model) run as the catalogue serves it; with --judge-url, "
                                                         "the model name at that endpoint")] = None,
    judge_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint for the judge, e.g. "
                                                       "http://host:8000/v1 (key: $DOMAINRAG_JUDGE_API_KEY)")] = None,
    judge_threshold: Annotated[float, typer.Option(help="in-process judges: a sentence is supported when "
                                                        "P(yes) over the yes/no logits reaches this")] = 0.5,
    limit: Annotated[int | None, typer.Option(help="ask only the first N questions")] = None,
    compare_gate: Annotated[bool, typer.Option("--compare-gate", help="also run each app with its answerability "
                                               "gate off, as a run labelled 'APP (no gate)'")] = False,
    withhold_gold: Annotated[int, typer.Option(min=0, help="also ask the first N answerable questions with their "
                                                           "gold documents withheld (expected answer: not found)")] = 0,
    concurrency: Annotated[int | None, typer.Option(help="questions in flight at once (default 8), so that a "
                                                         "batching backend decodes several answers per step; 1 "
                                                         "asks them one by one")] = None,
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    fail_under: FailUnder = None,
) -> None:
    """Ask RAG apps the questions and score their answers (EM, F1, key facts, refusals, citations, faithfulness)."""
    from domainrag.cli.eval_options import ANSWER_FLAGS, build_spec
    from domainrag.evaluation.answers import ANSWER_METRICS
    from domainrag.evaluation.app_eval import evaluate_apps
    from domainrag.evaluation.spec import AnswerEvalSpec

    thresholds = _thresholds(fail_under or [], ANSWER_METRICS)
    if judge_url and not judge_model:
        raise OptionError("--judge-url needs --judge-model (the model name at that endpoint)")
    judge = {"model": judge_model, "url": judge_url, "threshold": judge_threshold} if judge_model else None
    spec = build_spec(AnswerEvalSpec, ANSWER_FLAGS, apps=app_names, no_retrieval=no_retrieval, judge=judge,
                      limit=limit, compare_gate=compare_gate, withhold_gold=withhold_gold,
                      **({} if concurrency is None else {"concurrency": concurrency}))
    bar, update = labelled_progress()
    with bar:
        result = evaluate_apps(ws(), spec, dataset, progress=update)
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    sec = result.answers
    assert sec is not None
    shown = [m for m in sec.metrics if any(r.metrics.get(m) is not None for r in sec.runs) or m == "faithfulness"]
    _print_metrics(sec.runs, shown, f"answers — {sec.dataset.questions} questions")
    for r in sec.runs:
        for metric_name, why in r.status.items():
            console.print(f"{r.label}: {metric_name} {why}")
        if r.errors:
            err_console.print(f"[yellow]{r.label}: {r.errors} question(s) failed; see the report[/]")
        if r.judge_errors:
            err_console.print(f"[yellow]{r.label}: the judge failed on {r.judge_errors} answer(s); see the report[/]")
    _finish(result, sec.runs, report, json_out, thresholds)


@app.command("render")
def eval_render(
    result_json: Annotated[Path, typer.Argument(help="a result written by --json")],
    report: Annotated[Path, typer.Option("--report", help="HTML file to write")],
) -> None:
    """Re-render an HTML report from a saved JSON result."""
    from domainrag.evaluation.report import write_report
    from domainrag.evaluation.result import EvalResult

    console.print(f"report {write_report(EvalResult.read_json(result_json), report)}")
