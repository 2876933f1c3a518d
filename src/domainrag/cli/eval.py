"""``domainrag eval``: measure retrieval and answer accuracy on a data set, compare configurations.

Wired into the main CLI with :func:`register`. Exit codes: 0 ok, 1 a ``--fail-under`` gate failed,
2 a usage or data error (printed by the main CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from domainrag.errors import DomainRagError

eval_app = typer.Typer(help="Evaluate retrieval and answers on a data set; write HTML/JSON reports.",
                       no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

CONFIG_HELP = ("configuration to compare, repeatable: MODE[:EMBEDDING_MODEL][@INDEX] with MODE bm25 | dense | hybrid. "
               "`dense:M` uses embedding model M on its own index <index>__<m> (built by --ingest); `@INDEX` names an "
               "existing index. Default: bm25, dense, hybrid")
FailUnder = Annotated[list[str] | None, typer.Option("--fail-under", help="METRIC=MIN, repeatable: exit 1 when any "
                                                     "configuration scores below (e.g. ndcg@10=0.6)")]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="write a self-contained HTML report here")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="write the full result as JSON here")]


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command group to the main CLI."""
    app.add_typer(eval_app, name="eval")


def _ws() -> Any:
    from domainrag.cli.main import ws

    return ws()


def _progress() -> tuple[Any, Callable[[str, int, int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, transient=True)
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    return bar, update


def _print_metrics(runs: list[dict[str, Any]], metrics: list[str], title: str) -> None:
    """Metrics as rows and configurations as columns: stays readable in 80 columns."""
    table = Table(title=title)
    table.add_column("metric")
    for r in runs:
        table.add_column(r["label"], justify="right", overflow="fold")
    for m in metrics:
        table.add_row(m, *("n/m" if r["metrics"].get(m) is None else f"{r['metrics'][m]:.4f}" for r in runs))
    console.print(table)


def _finish(result: dict[str, Any], section: str, report: Path | None, json_out: Path | None,
            thresholds: dict[str, float]) -> None:
    from domainrag.evaluation.report import write_report
    from domainrag.evaluation.runner import check_thresholds, write_json

    if json_out:
        console.print(f"JSON   {write_json(result, json_out)}")
    if report:
        console.print(f"report {write_report(result, report)}")
    failures = check_thresholds(result[section]["runs"], thresholds)
    for f in failures:
        err_console.print(f"[bold red]below threshold:[/] {f}")
    if failures:
        raise typer.Exit(1)


@eval_app.command("retrieval")
def eval_retrieval(
    index: Annotated[str, typer.Option(help="index to evaluate (created by --ingest when missing)")],
    dataset: Annotated[Path, typer.Option(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) "
                                               "or a questions .jsonl (id, question, doc)")],
    config: Annotated[list[str] | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    ingest: Annotated[bool, typer.Option(help="create the index(es) and ingest corpus.jsonl first")] = False,
    embedding_model: Annotated[str | None, typer.Option(help="embedding model of --index when --ingest creates it "
                                                              "(default all-minilm-l6-v2)")] = None,
    store: Annotated[str, typer.Option(help="store of indexes created by --ingest")] = "embedded",
    split: Annotated[str, typer.Option(help="qrels split of a BEIR folder")] = "test",
    metric: Annotated[list[str] | None, typer.Option("--metric", help="metric, repeatable (ndcg@k, recall@k, "
                                                      "precision@k, mrr@k, map); default: nDCG@10, recall@1/5/10/100, "
                                                      "MRR@10, MAP")] = None,
    depth: Annotated[int | None, typer.Option(help="chunks fetched per query (default 2 × largest cut-off)")] = None,
    max_words: Annotated[int, typer.Option(help="chunk size in words when ingesting")] = 120,
    overlap_words: Annotated[int, typer.Option(help="chunk overlap in words when ingesting")] = 20,
    limit: Annotated[int | None, typer.Option(help="evaluate only the first N queries")] = None,
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    fail_under: FailUnder = None,
) -> None:
    """Score retrieval configurations (nDCG@10, recall@k, MRR@10, MAP) on a labelled data set."""
    import json

    from domainrag.evaluation.beir import load_retrieval_dataset
    from domainrag.evaluation.retrieval import DEFAULT_METRICS
    from domainrag.evaluation.runner import parse_thresholds, run_retrieval_eval, validate_metrics

    try:
        metrics = validate_metrics(metric or list(DEFAULT_METRICS))
    except ValueError as exc:
        raise DomainRagError(str(exc)) from exc
    thresholds = parse_thresholds(fail_under or [], metrics)
    data = load_retrieval_dataset(dataset, split)
    store_cfg: Any = json.loads(store) if store.strip().startswith("{") else store
    bar, update = _progress()
    with bar:
        result = run_retrieval_eval(_ws(), data, index, config or [], ingest=ingest, embedding_model=embedding_model,
                                    store=store_cfg, metrics=metrics, depth=depth, max_words=max_words,
                                    overlap_words=overlap_words, limit=limit, progress=update)
    for w in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {w}")
    sec = result["retrieval"]
    _print_metrics(sec["runs"], metrics, f"retrieval — {sec['dataset']['name']} ({sec['dataset']['queries']} queries)")
    _finish(result, "retrieval", report, json_out, thresholds)


@eval_app.command("answers")
def eval_answers(
    app: Annotated[list[str], typer.Option("--app", help="RAG app to evaluate, repeatable")],
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
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    fail_under: FailUnder = None,
) -> None:
    """Ask RAG apps the questions and score their answers (EM, F1, key facts, refusals, citations, faithfulness)."""
    from domainrag.data.prompts import NOT_FOUND_ANSWER
    from domainrag.evaluation.answers import ANSWER_METRICS
    from domainrag.evaluation.beir import read_questions
    from domainrag.evaluation.closed_book import LABEL_SUFFIX, ClosedBookApp, closed_book_config
    from domainrag.evaluation.judge import OpenAIJudge, judge_from_catalogue
    from domainrag.evaluation.runner import (
        app_config,
        model_info,
        parse_thresholds,
        run_answer_eval,
        unknown_gold_warnings,
    )
    from domainrag.serving.apps import load_app

    thresholds = parse_thresholds(fail_under or [], ANSWER_METRICS)
    if judge_url and not judge_model:
        raise DomainRagError("--judge-url needs --judge-model (the model name at that endpoint)")
    if len(set(app)) != len(app):
        raise DomainRagError("an app is named twice in --app",
                             hint="use --no-retrieval to add an app's run without retrieval")
    items = read_questions(dataset)[: limit or None]
    ws = _ws()
    configs = {name: app_config(ws, name) for name in app}  # fails fast on an unknown app
    models: dict[str, Any] = {}
    for cfg in configs.values():
        for m in (cfg.get("model"), cfg.get("embedding_model")):
            if m:
                models[m] = model_info(ws, m)
    warnings = unknown_gold_warnings(ws, items, configs, dataset.name)
    loaders: dict[str, Any] = {}
    for name in app:
        loaders[name] = lambda n=name: load_app(ws, n)
        if no_retrieval:
            label = name + LABEL_SUFFIX
            not_found = (ws.catalog.require("app", name).get("generation") or {}).get("not_found_answer")
            configs[label] = closed_book_config(configs[name], not_found or NOT_FOUND_ANSWER)
            loaders[label] = lambda n=name: ClosedBookApp(load_app(ws, n))
    judge: Any = None
    if judge_url and judge_model:
        judge = OpenAIJudge(judge_url, judge_model)
    elif judge_model:
        judge = judge_from_catalogue(ws, judge_model, threshold=judge_threshold)
        models[judge_model] = model_info(ws, judge_model)
    bar, update = _progress()
    with bar:
        result = run_answer_eval(loaders, items, dataset_files={dataset.name: dataset}, configs=configs, judge=judge,
                                 models=models, progress=update, warnings=warnings)
    for w in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {w}")
    sec = result["answers"]
    shown = [m for m in sec["metrics"] if any(r["metrics"].get(m) is not None for r in sec["runs"])
             or m == "faithfulness"]
    _print_metrics(sec["runs"], shown, f"answers — {sec['dataset']['questions']} questions")
    for r in sec["runs"]:
        for metric_name, why in r["status"].items():
            console.print(f"{r['label']}: {metric_name} {why}")
        if r["errors"]:
            err_console.print(f"[yellow]{r['label']}: {r['errors']} question(s) failed; see the report[/]")
        if r.get("judge_errors"):
            err_console.print(f"[yellow]{r['label']}: the judge failed on {r['judge_errors']} answer(s); "
                              "see the report[/]")
    _finish(result, "answers", report, json_out, thresholds)


@eval_app.command("render")
def eval_render(
    result_json: Annotated[Path, typer.Argument(help="a result written by --json")],
    report: Annotated[Path, typer.Option("--report", help="HTML file to write")],
) -> None:
    """Re-render an HTML report from a saved JSON result."""
    import json

    from domainrag.evaluation.report import write_report

    if not result_json.is_file():
        raise DomainRagError(f"{result_json}: no such file")
    console.print(f"report {write_report(json.loads(result_json.read_text()), report)}")
