"""domainrag index: vector indexes (PUT /index); documents go in with 'domainrag ingest'."""

from __future__ import annotations

from typing import Annotated

import typer

from domainrag.cli._context import (
    JsonFlag,
    OptionError,
    Waiting,
    command_app,
    console,
    print_json,
    print_record,
    print_rows,
    print_table,
    store_option,
    ws,
)
from domainrag.errors import DomainRagError

app = command_app("index", "Vector indexes.")


@app.command("create")
def index_create(
    name: Annotated[str, typer.Argument(help="index name (letters, digits, _ and -)")],
    embedding_model: Annotated[str, typer.Option(help="registered or base embedding model")] = "all-minilm-l6-v2",
    store: Annotated[
        str, typer.Option(help='store type or JSON config, e.g. {"type": "opensearch", ...}')
    ] = "embedded",
) -> None:
    """Create an index; the vector dimension is read from the embedding model (PUT /index)."""
    from domainrag.workspace import create_index

    store_config = store_option(store)
    with Waiting(f"loading embedding model {embedding_model}"):
        record = create_index(ws(), name, embedding_model, store_config)
    console.print(
        f"index [bold]{name}[/]: {record['dimension']}-d vectors from {embedding_model}, "
        f"store {record['store']['type']}"
    )


@app.command("list")
def index_list(as_json: JsonFlag = False) -> None:
    """Indexes with their embedding model, store and size (counted in the store, as 'index stats' does)."""
    rows = ws().catalog.list("index")
    for r in rows:
        r["store_type"] = r["store"]["type"]
        try:  # live counts: the catalogue's copy is only refreshed by `ingest`
            store = ws().store(r["name"])
            r["chunks"], r["documents"] = store.count(), store.document_count()
        except DomainRagError as exc:
            r["chunks"] = r["documents"] = None if as_json else f"unavailable ({exc.message[:40]})"
            r["unavailable"] = exc.message
    print_rows(rows, ["name", "embedding_model", "dimension", "store_type", "chunks", "documents"], "indexes", as_json)


@app.command("stats")
def index_stats(name: Annotated[str, typer.Argument(help="index name")], as_json: JsonFlag = False) -> None:
    """An index's size and settings."""
    record = ws().catalog.require("index", name)
    print_record({**ws().store(name).stats(), "embedding_model": record["embedding_model"]}, f"index {name}", as_json)


@app.command("delete")
def index_delete(
    name: Annotated[str, typer.Argument(help="index name")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete an index and its chunks."""
    from domainrag.workspace import delete_index

    ws().catalog.require("index", name)  # an unknown name is an error before any question is asked
    if not yes:
        typer.confirm(f"delete index '{name}' and its chunks?", abort=True)
    delete_index(ws(), name)
    console.print(f"index {name} deleted")


@app.command("search")
def index_search(
    name: Annotated[str, typer.Argument(help="index to search")],
    query: Annotated[str, typer.Option(help="the question or keywords to retrieve for")],
    mode: Annotated[str, typer.Option(help="dense | bm25 | hybrid")] = "hybrid",
    top_k: Annotated[int, typer.Option(min=1, max=100, help="hits to show")] = 5,
    rerank_model: Annotated[str | None, typer.Option(help="registered reranker to rescore the hits with")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the hits as JSON")] = False,
) -> None:
    """Retrieve without the LLM, to debug retrieval: each hit with its document, page, section and the
    score and rank of every retriever that found it."""
    from domainrag.retrieval.retriever import RetrievalConfig, Retriever  # start-up time, see _context

    if mode not in ("dense", "bm25", "hybrid"):
        raise OptionError(f"--mode {mode!r} is not one of dense, bm25, hybrid")
    if not query.strip():
        raise OptionError("--query is empty", hint='search for a question or keywords, e.g. --query "CTL-400 weight"')
    config = RetrievalConfig(index=name, mode=mode, top_k=top_k, rerank_model=rerank_model)
    with Waiting(f"loading the models of index {name} and searching"):
        reranker = ws().reranker(rerank_model) if rerank_model else None
        hits = Retriever(ws().store(name), ws().index_embedder(name), config, reranker=reranker).run(query)
    rows = [{"rank": i, "document": h.doc_id, "page": h.metadata.get("page"), "section": h.metadata.get("section"),
             "kind": h.metadata.get("kind", "text"), "score": round(h.score, 4),
             "scores": {k: round(v, 4) for k, v in h.scores.items()}, "ranks": h.ranks, "chunk_id": h.chunk_id,
             "text": h.text} for i, h in enumerate(hits, start=1)]
    if as_json:
        print_json(rows)
        return
    print_table([{**r, "text": " ".join(r["text"].split())[:80]} for r in rows],
                ["rank", "document", "page", "section", "kind", "score", "scores", "ranks", "text"],
                f"{name}: {query}")
