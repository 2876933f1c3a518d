"""Synthetic (query, positive chunk) pairs for a dataset that is only a document corpus.

A team's proprietary data rarely comes with labelled queries, so an embedding/reranker job given a
corpus (txt/md/html files, a folder of them, document JSONL or chunk JSONL) chunks it with the
ingestion chunker and writes one or more queries per chunk:

* ``llm``: a small instruction model from the zoo (SmolLM2-135M-Instruct by default) is asked, in
  batches, for a question the passage answers (greedy, a few tokens).
* ``heuristic``: no model at all (doc2query-lite, see :func:`heuristic_queries`).

Every candidate then goes through the same cleaning: exact and near-duplicate queries are dropped
(two identical queries with different positives would be false negatives for in-batch losses),
then queries that are too short/long, copied verbatim from their passage, or whose passage the base
embedder does not retrieve in its top ``roundtrip_k`` for them (round-trip consistency, as in
Promptagator / "InPars") are filtered out. :class:`SyntheticReport` counts each stage.

Public surface: :func:`is_corpus`, :func:`choose_mode`, :func:`load_passages`, :func:`generate_pairs`,
:func:`write_pairs`, :class:`SyntheticConfig`, :class:`SyntheticReport`; the generators and the
cleaning are in :mod:`domainrag.training.synthetic_queries`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainrag.data.chunking import Chunk, chunk_document
from domainrag.data.formats import POSITIVE_COLUMN, QUERY_COLUMNS, Pair, parse_jsonl
from domainrag.data.loaders import iter_files, load_file
from domainrag.errors import DatasetError, DomainRagError
from domainrag.training.hyperparameters import SYNTHETIC_MODES, SyntheticMode
from domainrag.training.synthetic_queries import clean, heuristic_queries, llm_queries
from domainrag.zoo import resolve_llm

PAIRS_FILE = "synthetic_pairs.jsonl"

@dataclass(frozen=True)
class SyntheticConfig:
    """How queries are generated and filtered (defaults suit MiniLM-sized models on CPU)."""

    mode: SyntheticMode = "llm"
    llm: str = "smollm2-135m-instruct"  # zoo name, local folder or hub id of an instruction-tuned causal LM
    queries_per_passage: int = 1
    max_passages: int | None = None  # first N chunks only (cost cap); None = all
    chunk_words: int = 120  # ingestion's chunk size, so pairs look like what the index holds
    min_passage_words: int = 8
    min_query_words: int = 3
    max_query_words: int = 32
    near_duplicate_jaccard: float = 0.8  # content-word Jaccard at or above which two queries are one
    roundtrip_k: int = 10  # keep a query only if its passage is in the base embedder's top-k; 0 = off
    batch_size: int = 8  # LLM generation batch
    max_new_tokens: int = 40
    seed: int = 0


@dataclass
class SyntheticReport:
    """The kept pairs and how many candidates each stage removed."""

    pairs: list[Pair]
    mode: SyntheticMode
    passages: int
    generated: int
    exact_duplicates: int = 0
    near_duplicates: int = 0
    filtered: dict[str, int] = field(default_factory=dict)  # reason → count

    @property
    def kept(self) -> int:
        return len(self.pairs)

    def counts(self) -> dict[str, Any]:
        """JSON-ready counts for metrics and the model card."""
        return {
            "mode": self.mode,
            "passages": self.passages,
            "generated": self.generated,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "deduped": self.generated - self.exact_duplicates - self.near_duplicates,
            "filtered": dict(self.filtered),
            "kept": self.kept,
        }


# ---------------------------------------------------------------------------------------------
# Corpus input


def is_corpus(path: Path) -> bool:
    """True when ``path`` is documents rather than a pairs file (no query + positive columns)."""
    path = Path(path)
    if path.is_dir():
        return True
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return False
    if suffix != ".jsonl":
        return suffix in (".txt", ".md", ".markdown", ".html", ".htm")
    if not path.is_file():
        return False
    with path.open(encoding="utf-8-sig") as fh:
        for _line, obj in parse_jsonl(path, fh):
            has_pair = any(k in obj for k in QUERY_COLUMNS) and POSITIVE_COLUMN in obj
            return not has_pair and ("text" in obj or "content" in obj)
    return False


def load_passages(path: Path, chunk_words: int = 120, min_words: int = 8) -> list[Chunk]:
    """Chunks of every document under ``path`` (ingestion's chunker), unique texts, short ones dropped.

    Chunk JSONL (records with ``text``, shorter than ``chunk_words``) comes back one chunk per record.
    """
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for file in iter_files([path]):
        for doc in load_file(file):
            for chunk in chunk_document(doc, max_words=chunk_words, overlap_words=min(20, chunk_words // 4)):
                if len(chunk.text.split()) >= min_words and chunk.text not in seen:
                    seen.add(chunk.text)
                    chunks.append(chunk)
    if not chunks:
        raise DatasetError(
            str(path),
            f"the corpus holds no passage of at least {min_words} words",
            hint="point the job at documents (txt/md/html/jsonl) or at a pairs file with query,positive",
        )
    return chunks


def choose_mode(requested: str | None, dataset: Path) -> SyntheticMode | None:
    """Synthetic mode for a job: None for a pairs file, ``requested`` or auto-picked for a corpus.

    Auto picks ``heuristic``: on the shipped sample domain it beat SmolLM2-135M queries at a tiny fraction
    of the cost (benchmarks/results/embedding_synthetic_sample*.json); ask for ``llm`` explicitly,
    ideally with a stronger ``synthetic_llm``.
    """
    corpus = is_corpus(dataset)
    if requested is None:
        return "heuristic" if corpus else None
    if requested not in SYNTHETIC_MODES:
        raise DomainRagError(f"unknown synthetic query mode {requested!r}", hint="use 'llm' or 'heuristic'")
    if not corpus:
        raise DatasetError(
            str(dataset),
            f"synthetic_queries={requested} needs a document corpus, but this file already has query/positive columns",
            hint="drop synthetic_queries to train on the pairs, or point --dataset at the documents",
        )
    return requested  # type: ignore[return-value]


def generate_pairs(
    passages: Sequence[Chunk],
    config: SyntheticConfig,
    *,
    embedder: Any | None = None,
    log: Callable[[str], None] = print,
) -> SyntheticReport:
    """Generate, deduplicate and filter synthetic (query, passage) pairs for ``passages``.

    ``embedder`` (a SentenceTransformer, normally the base model being fine-tuned) drives the
    round-trip filter; without one that filter is skipped.
    """
    if config.mode not in SYNTHETIC_MODES:
        raise DomainRagError(f"unknown synthetic query mode {config.mode!r}", hint="use 'llm' or 'heuristic'")
    chosen = list(passages[: config.max_passages] if config.max_passages else passages)
    if config.mode == "heuristic":
        candidates = heuristic_queries(chosen, per_passage=config.queries_per_passage)
    else:

        model_path = resolve_llm(config.llm)
        log(f"generating {config.queries_per_passage} query per passage for {len(chosen)} passages with {config.llm}")
        step = max(1, len(chosen) // (10 * config.batch_size)) * config.batch_size

        def progress(done: int, total: int) -> None:
            if done % step == 0 or done == total:
                log(f"synthetic queries: {done}/{total} passages")

        candidates = llm_queries(
            chosen,
            model_path,
            per_passage=config.queries_per_passage,
            batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens,
            seed=config.seed,
            progress=progress,
        )
    pairs, exact, near, filtered = clean(candidates, [p.text for p in chosen], config, embedder)
    report = SyntheticReport(
        pairs=pairs,
        mode=config.mode,
        passages=len(chosen),
        generated=len(candidates),
        exact_duplicates=exact,
        near_duplicates=near,
        filtered=filtered,
    )
    log(
        f"synthetic queries ({config.mode}): {report.generated} generated from {report.passages} passages, "
        f"{exact} exact + {near} near duplicates dropped, filtered "
        + ", ".join(f"{k}={v}" for k, v in filtered.items() if v)
        + f"; {report.kept} pairs kept"
    )
    return report


def write_pairs(pairs: Sequence[Pair], path: Path) -> Path:
    """Write pairs as JSONL with ``query`` / ``positive`` (the pairs format every job reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps({"query": p.query, "positive": p.positive}, ensure_ascii=False) + "\n")
    return path
