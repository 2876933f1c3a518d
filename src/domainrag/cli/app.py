"""domainrag app: RAG applications (CreateApplication) and asking them questions (InvokeApplication)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from domainrag.cli._context import (
    JsonFlag,
    OptionError,
    Waiting,
    command_app,
    console,
    load_json,
    print_json,
    print_record,
    print_rich,
    print_rows,
    progress_bar,
    ws,
)

app = command_app("app", "RAG applications.")


@app.command("create")
def app_create(
    name: Annotated[str, typer.Option(help="app name (what 'app invoke' and API keys refer to)")],
    model: Annotated[str, typer.Option(help="registered LLM or base model")],
    retrieval: Annotated[
        str, typer.Option(help='JSON, e.g. {"vector_store": "embedded", "index": "rag_vectors", "top_k": 5}')
    ],
    generation: Annotated[
        str | None, typer.Option(help='JSON, e.g. {"temperature": 0.1, "max_new_tokens": 200}')
    ] = None,
    replace: Annotated[bool, typer.Option(help="overwrite an existing app")] = False,
) -> None:
    """Create a RAG application (CreateApplication)."""
    from domainrag.serving.apps import AppSpec, create_app

    spec = AppSpec.model_validate(
        {
            "name": name,
            "model": model,
            "retrieval": load_json(retrieval, "--retrieval"),
            **({"generation": load_json(generation, "--generation")} if generation else {}),
        }
    )
    create_app(ws(), spec, replace=replace)
    console.print(
        f"app [bold]{name}[/]: model {model}, index {spec.retrieval.index}, top_k {spec.retrieval.top_k}, "
        f"temperature {spec.generation.temperature}"
    )


@app.command("list")
def app_list(as_json: JsonFlag = False) -> None:
    """Apps with their model and index."""
    rows = ws().catalog.list("app")
    table = [{**r, "index": r["retrieval"]["index"], "top_k": r["retrieval"]["top_k"]} for r in rows]
    print_rows(rows if as_json else table, ["name", "model", "index", "top_k", "created_at"], "apps", as_json)


@app.command("show")
def app_show(name: Annotated[str, typer.Argument(help="app name")], as_json: JsonFlag = False) -> None:
    """An app's settings (model, retrieval, generation) and whether its answerability gate is calibrated."""
    from domainrag.serving.apps import AppRecord, gate_status

    record = ws().catalog.require("app", name)
    print_record(record, f"app {name}", as_json)
    if not as_json:
        console.print(f"gate: {gate_status(AppRecord.model_validate(record))}")


@app.command("calibrate")
def app_calibrate(
    name: Annotated[str, typer.Argument(help="app whose gate is fitted")],
    questions: Annotated[Path, typer.Option(help="held-out questions (.jsonl: id, question, doc or docs; "
                                                 "doc null = unanswerable)")],
    target_false_refusal: Annotated[float, typer.Option(min=0.0, max=0.99, help="largest share of answerable "
                                                                               "questions the gate may refuse")] = 0.05,
    withhold_gold: Annotated[bool, typer.Option(help="also ask each answerable question with its gold documents "
                                                     "removed from the passages, as an unanswerable one")] = True,
    reranker: Annotated[str | None, typer.Option(help="registered reranker the gate scores with, when the app "
                                                      "has none")] = None,
    signals: Annotated[str, typer.Option(help="comma-separated gate signals: rerank, dense, bm25, reader, check "
                                              "(those unavailable are left out)")] = "rerank,dense,bm25,reader,check",
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N questions")] = None,
) -> None:
    """Fit the app's answerability gate on labelled questions to a target false-refusal rate and store it."""
    from domainrag.evaluation.gate_calibration import calibrate_app

    with progress_bar() as bar:
        task = bar.add_task("gate signals", total=None)
        cal = calibrate_app(ws(), name, questions, target_false_refusal, withhold_gold=withhold_gold,
                            reranker=reranker, signals=[s.strip() for s in signals.split(",") if s.strip()],
                            limit=limit, progress=lambda done, total: bar.update(task, completed=done, total=total))
    fitted = cal.fitted_on
    console.print(f"app [bold]{name}[/]: gate fitted on {fitted['answerable']} answerable and "
                  f"{fitted['unanswerable']} unanswerable question(s) ({fitted['withheld']} with gold withheld); "
                  f"signals {', '.join(cal.features)}; threshold {cal.threshold:.3f}")
    console.print(f"on the calibration questions: false refusals {cal.measured['false_refusal_rate']:.3f} "
                  f"(target {target_false_refusal}), refusals of unanswerable "
                  f"{cal.measured['refusal_rate_unanswerable']:.3f}; measure on other questions with "
                  "`domainrag eval answers`")


@app.command("invoke")
def app_invoke(
    name: Annotated[str, typer.Argument(help="app to ask")],
    query: Annotated[str, typer.Option(help="the question")],
    stream: Annotated[bool, typer.Option(help="print tokens as they are generated")] = True,
    top_k: Annotated[int | None, typer.Option(min=1, max=100, help="passages to retrieve (default: the app's)")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, max=4096, help="answer length cap in tokens "
                                                                        "(default: the app's)")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0, help="sampling temperature "
                                                                            "(default: the app's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer and references as JSON")] = False,
) -> None:
    """Ask an app a question (InvokeApplication --stream)."""
    from domainrag.serving.apps import load_app
    from domainrag.serving.rag import QueryError, check_query

    try:
        check_query(query)  # before the model loads
    except QueryError as exc:
        raise OptionError(f"--query: {exc}") from exc
    # A spinner from here to the first token: loading the embedder and the LLM, retrieving and the
    # model's first forward pass take seconds to a minute on a CPU.
    with Waiting(f"loading app {name}") as wait:
        rag = load_app(ws(), name)
        overrides = {k: v for k, v in (("max_new_tokens", max_tokens), ("temperature", temperature)) if v is not None}
        if overrides:  # this call only: the app's stored defaults stay as they are
            rag.generation = rag.generation.model_copy(update=overrides)
        print_answer(rag, query, stream=stream and not as_json, top_k=top_k, as_json=as_json, wait=wait)


def print_answer(rag: Any, query: str, *, stream: bool = True, top_k: int | None = None, as_json: bool = False,
                 wait: Waiting | None = None) -> str:
    """Ask a loaded app, print the answer (streamed or whole) and its sources; returns the answer. ``wait``,
    a running spinner, says what happens until the first token and stops there (streaming) or at the end."""
    text, refs, grounding = "", [], None
    if wait is not None:
        wait.update("retrieving and generating" if stream else "retrieving and generating the whole answer")
    for event in rag.stream(query, top_k=top_k):
        if event.type == "token":
            text += event.text
            if stream:
                if wait is not None:
                    wait.done()
                console.out(event.text, end="", highlight=False)
        else:
            refs, grounding = event.references, event.grounding
    if wait is not None:
        wait.done()
    if as_json:
        print_json({"answer": text, "references": refs, "grounding": grounding})
        return text
    if not stream:
        console.out(text, end="", highlight=False)
    console.print()
    table = Table(title="sources", show_lines=False)
    for col in ("#", "document", "page", "section", "chunk id", "score"):
        table.add_column(col)
    for r in refs:
        table.add_row(str(r["citation"]), r["document"], str(r.get("page") or "-"), r.get("section") or "-",
                      r["chunk_id"], f"{r['score']:.4f}")
    print_rich(table)
    if grounding is not None:
        console.print(f"grounding: {grounding_line(grounding)}")
    return text


def grounding_line(grounding: dict[str, Any]) -> str:
    """One line on an answer's grounding: grounded or not (and why), flagged sentences."""
    verdict = {True: "grounded", False: "NOT grounded", None: "not established"}[grounding.get("grounded")]
    flagged = [s["sentence"] for s in grounding.get("sentences", []) if s.get("status") != "supported"]
    more = "; flagged: " + " | ".join(f'"{s[:80]}"' for s in flagged) if flagged else ""
    return f"{verdict} ({grounding.get('reason')}){more}"
