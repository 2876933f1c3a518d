"""Evaluation data sets: BEIR folders (corpus / queries / qrels) and the project's question files.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (header ``query-id corpus-id score``). The project's question
format is one JSON object per line with ``id``, ``question`` and ``doc`` (the gold document, or
null when the corpus cannot answer it), plus ``answer`` / ``short_answer`` for answer evaluation.

Loading never stops at dirty data: empty queries and qrels naming unknown queries or documents
are counted, dropped and reported as warnings, so every run states what it did not measure.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainrag.data.formats import iter_jsonl
from domainrag.data.loaders import Document
from domainrag.errors import DatasetError


@dataclass
class LoadStats:
    """What loading dropped, so reports can say it."""

    empty_queries: list[str] = field(default_factory=list)
    empty_documents: list[str] = field(default_factory=list)
    unknown_query_qrels: int = 0
    unknown_doc_qrels: int = 0
    queries_without_qrels: int = 0

    def warnings(self) -> list[str]:
        out = []
        if self.empty_queries:
            out.append(f"{len(self.empty_queries)} empty quer{'y' if len(self.empty_queries) == 1 else 'ies'} "
                       f"skipped: {', '.join(self.empty_queries[:10])}")
        if self.empty_documents:
            out.append(f"{len(self.empty_documents)} corpus document(s) with no text skipped: "
                       f"{', '.join(self.empty_documents[:10])}")
        if self.unknown_query_qrels:
            out.append(f"{self.unknown_query_qrels} qrels row(s) name a query not in the queries file; ignored")
        if self.unknown_doc_qrels:
            out.append(f"{self.unknown_doc_qrels} qrels row(s) name a document not in the corpus; ignored")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"empty_queries": len(self.empty_queries), "empty_documents": len(self.empty_documents),
                "unknown_query_qrels": self.unknown_query_qrels, "unknown_doc_qrels": self.unknown_doc_qrels,
                "queries_without_qrels": self.queries_without_qrels}


@dataclass
class RetrievalDataset:
    """Queries with graded relevance judgements, and (when the data set has one) its corpus."""

    name: str
    format: str  # "beir" | "questions"
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus: dict[str, Document] | None
    files: dict[str, Path]
    stats: LoadStats = field(default_factory=LoadStats)

    def documents(self) -> list[Document]:
        return list((self.corpus or {}).values())


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(str(path), f"missing {what}",
                           hint="a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    return path


def _id(path: Path, lineno: int, obj: dict[str, Any], *keys: str) -> str:
    for key in keys:
        if obj.get(key) not in (None, ""):
            return str(obj[key])
    raise DatasetError(str(path), "missing id", line=lineno, field=keys[0])


def read_corpus(path: Path, stats: LoadStats | None = None) -> dict[str, Document]:
    """``corpus.jsonl`` → documents keyed by ``_id`` (one Document per corpus entry)."""
    stats = stats if stats is not None else LoadStats()
    corpus: dict[str, Document] = {}
    for lineno, obj in iter_jsonl(path, encoding="utf-8"):
        doc_id = _id(path, lineno, obj, "_id", "id")
        text = str(obj.get("text") or "").strip()
        title = str(obj.get("title") or "").strip()
        if not text:
            stats.empty_documents.append(doc_id)
            continue
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        corpus[doc_id] = Document(doc_id=doc_id, text=text, title=title, metadata=dict(meta))
    return corpus


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``qrels/<split>.tsv`` (header ``query-id corpus-id score``) → {query: {doc: grade}}."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        for lineno, row in enumerate(rows, start=1):
            if not row or not "".join(row).strip():
                continue
            if lineno == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(row) < 3:
                raise DatasetError(str(path), f"expected 3 tab-separated columns, found {len(row)}", line=lineno,
                                   hint="columns: query-id, corpus-id, score")
            try:
                grade = int(float(row[2]))
            except ValueError as exc:
                raise DatasetError(str(path), f"score '{row[2]}' is not a number", line=lineno) from exc
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    return qrels


def load_beir(folder: str | Path, split: str = "test") -> RetrievalDataset:
    """Load a BEIR folder; each missing file is named in the error."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(str(root), "no such folder")
    files = {"corpus.jsonl": _require(root / "corpus.jsonl", "corpus file corpus.jsonl"),
             "queries.jsonl": _require(root / "queries.jsonl", "queries file queries.jsonl"),
             f"qrels/{split}.tsv": _require(root / "qrels" / f"{split}.tsv", f"qrels file qrels/{split}.tsv")}
    stats = LoadStats()
    corpus = read_corpus(files["corpus.jsonl"], stats)
    queries: dict[str, str] = {}
    for lineno, obj in iter_jsonl(files["queries.jsonl"], encoding="utf-8"):
        qid = _id(files["queries.jsonl"], lineno, obj, "_id", "id")
        text = str(obj.get("text") or "").strip()
        if not text:
            stats.empty_queries.append(qid)
            continue
        queries[qid] = text
    raw = read_qrels(files[f"qrels/{split}.tsv"])
    qrels = _clean_qrels(raw, queries, set(corpus) | set(stats.empty_documents), stats)
    # BEIR evaluates the queries that have judgements in the split: the others are not part of it.
    queries = {q: t for q, t in queries.items() if q in qrels}
    return RetrievalDataset(root.name, "beir", queries, qrels, corpus, files, stats)


def _clean_qrels(
    raw: dict[str, dict[str, int]], queries: dict[str, str], known_docs: set[str] | None, stats: LoadStats
) -> dict[str, dict[str, int]]:
    skipped = set(stats.empty_queries)
    qrels: dict[str, dict[str, int]] = {}
    for qid, docs in raw.items():
        if qid in skipped:
            continue
        if qid not in queries:
            stats.unknown_query_qrels += len(docs)
            continue
        kept = {}
        for doc, grade in docs.items():
            if known_docs is not None and doc not in known_docs:
                stats.unknown_doc_qrels += 1
            else:
                kept[doc] = grade
        if any(g > 0 for g in kept.values()):
            qrels[qid] = kept
        else:
            stats.queries_without_qrels += 1
    return qrels


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """The project's question format; each row needs ``id`` and ``question``."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(str(p), "missing questions file", hint="one JSON object per line: id, question, doc, answer")
    rows = []
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(p, encoding="utf-8"):
        qid = _id(p, lineno, obj, "id", "_id")
        if qid in seen:
            raise DatasetError(str(p), f"duplicate id '{qid}'", line=lineno, field="id")
        seen.add(qid)
        if not isinstance(obj.get("question", ""), str):
            raise DatasetError(str(p), "question must be a string", line=lineno, field="question")
        rows.append({**obj, "id": qid, "question": str(obj.get("question") or "").strip()})
    return rows


def gold_docs(item: dict[str, Any]) -> list[str]:
    """Gold documents of a question: ``docs`` (list) or ``doc``; empty = unanswerable."""
    docs = item.get("docs")
    if isinstance(docs, list) and docs:
        return [str(d) for d in docs]
    return [str(item["doc"])] if item.get("doc") else []


def load_questions(path: str | Path, corpus: str | Path | None = None) -> RetrievalDataset:
    """Question file → retrieval data set: relevant = the gold document(s); unanswerable ones are left out.

    The corpus is ``corpus`` if given, else a ``corpus.jsonl`` beside the file if there is one
    (needed to ingest it and for the unknown-document check).
    """
    p = Path(path)
    items = read_questions(p)
    stats = LoadStats()
    files = {p.name: p}
    corpus_path = Path(corpus) if corpus else p.parent / "corpus.jsonl"
    docs: dict[str, Document] | None = None
    if corpus or corpus_path.is_file():
        files["corpus.jsonl"] = _require(corpus_path, "corpus file")
        try:
            docs = read_corpus(corpus_path, stats)
        except DatasetError as exc:
            if corpus:
                raise
            why = f"{corpus_path.name} was read as the corpus of {p.name} because it lies in the same folder"
            raise DatasetError(exc.path, exc.problem, line=exc.line, field=exc.field,
                               hint=f"{exc.hint}; {why}" if exc.hint else why) from exc
    queries: dict[str, str] = {}
    raw: dict[str, dict[str, int]] = {}
    for item in items:
        gold = gold_docs(item)
        if not gold:
            continue  # unanswerable: nothing relevant to retrieve
        if not item["question"]:
            stats.empty_queries.append(item["id"])
            continue
        queries[item["id"]] = item["question"]
        raw[item["id"]] = dict.fromkeys(gold, 1)
    known = None if docs is None else set(docs) | set(stats.empty_documents)
    qrels = _clean_qrels(raw, queries, known, stats)
    queries = {q: t for q, t in queries.items() if q in qrels}
    return RetrievalDataset(p.stem, "questions", queries, qrels, docs, files, stats)


def load_retrieval_dataset(path: str | Path, split: str = "test") -> RetrievalDataset:
    """A BEIR folder or a question file (``.jsonl``), told apart by what ``path`` is."""
    p = Path(path)
    if p.is_dir():
        return load_beir(p, split)
    if p.is_file():
        return load_questions(p)
    raise DatasetError(str(p), "no such file or folder",
                       hint="pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a questions .jsonl file")
