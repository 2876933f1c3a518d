"""The result of an evaluation: one typed record, saved as JSON (schema "domainrag.eval/1").

Retrieval and answer evaluations fill the same record (metadata, warnings, a retrieval and/or an
answers section), so a saved result can be re-rendered and compared later. Every model accepts
extra keys, so files written by earlier versions load unchanged.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domainrag.errors import DatasetError
from domainrag.evaluation.answers import QuestionScore
from domainrag.storage.lake import sha256_file
from domainrag.zoo import BASE_MODELS

SCHEMA = "domainrag.eval/1"


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class DatasetFile(_Record):
    path: str
    sha256: str


class Metadata(_Record):
    """How a result was made: when, by which command and versions, on which data files and models."""

    created_at: str
    command: str
    domainrag_version: str = "unknown"
    python: str = ""
    platform: str = ""
    dataset_files: dict[str, DatasetFile] = Field(default_factory=dict)
    models: dict[str, Any] = Field(default_factory=dict)
    elapsed_s: float | None = None


class Passage(_Record):
    """A retrieved chunk as the report shows it (text cut to an excerpt)."""

    doc_id: str
    chunk_id: str
    score: float
    text: str = ""


class RankedHit(Passage):
    relevant: bool = False


class RetrievalRun(_Record):
    label: str
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float | None]
    per_query: dict[str, dict[str, float]] = Field(default_factory=dict)
    seconds: float | None = None


class RetrievalQuery(_Record):
    id: str
    text: str
    relevant: list[str] = Field(default_factory=list)
    hits: dict[str, list[RankedHit]] = Field(default_factory=dict)


class RetrievalDatasetInfo(_Record):
    name: str
    format: str
    queries: int
    corpus: int | None = None
    qrels: int
    dropped: dict[str, int] = Field(default_factory=dict)


class IngestSummary(_Record):
    """What building an index for the evaluation wrote (plus the ingest report's counts)."""

    index: str
    embedding_model: str
    max_words: int
    overlap_words: int
    documents: int = 0
    chunks: int = 0
    written: int = 0


class RetrievalSection(_Record):
    dataset: RetrievalDatasetInfo
    metrics: list[str]
    ingest: list[IngestSummary] = Field(default_factory=list)
    runs: list[RetrievalRun]
    queries: list[RetrievalQuery] = Field(default_factory=list)


class AnswerEntry(_Record):
    """One app's answer to one question, with its scores."""

    answer: str | None = None
    error: str | None = None
    references: list[dict[str, Any]] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list)
    cited: list[int] = Field(default_factory=list)
    score: QuestionScore
    correct: bool


class AnswerQuestion(_Record):
    id: str
    question: str
    reference: Any = None  # as written in the questions file (usually a string)
    short_answer: Any = None
    gold: list[str] = Field(default_factory=list)
    results: dict[str, AnswerEntry] = Field(default_factory=dict)


class AnswerRun(_Record):
    label: str
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float | None]
    status: dict[str, str] = Field(default_factory=dict)
    judge_errors: int = 0
    errors: int = 0
    seconds: float | None = None


class AnswerDatasetInfo(_Record):
    questions: int
    answerable: int
    unanswerable: int


class AnswersSection(_Record):
    dataset: AnswerDatasetInfo
    metrics: list[str]
    judge: dict[str, Any] = Field(default_factory=dict)
    runs: list[AnswerRun]
    questions: list[AnswerQuestion] = Field(default_factory=list)


class EvalResult(_Record):
    """Everything one evaluation measured; :meth:`to_json` is the on-disk layout."""

    schema_: str = Field(SCHEMA, alias="schema")
    title: str
    metadata: Metadata
    warnings: list[str] = Field(default_factory=list)
    retrieval: RetrievalSection | None = None
    answers: AnswersSection | None = None
    gate: dict[str, Any] | None = None  # the answerability gate's refusal rates (quickstart), when measured

    def to_json(self) -> dict[str, Any]:
        """The JSON-able dict written to disk (and read by the report)."""
        return self.model_dump(mode="json", by_alias=True)

    def write_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=1, default=str))
        return p

    @classmethod
    def read_json(cls, path: str | Path) -> EvalResult:
        """Load a saved result; a malformed file is named with the first field that is wrong."""
        p = Path(path)
        if not p.is_file():
            raise DatasetError(str(p), "no such file")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(str(p), f"not JSON: {exc.msg}", line=exc.lineno) from exc
        return cls.from_json(data, str(p))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "result") -> EvalResult:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise DatasetError(source, f"not an evaluation result: {err['msg']}",
                               field=".".join(str(p) for p in err["loc"])) from exc


def new_result(title: str, dataset_files: Mapping[str, Path], command: str | None = None) -> EvalResult:
    """The record every evaluation fills: metadata (versions, data checksums, time), no sections yet."""
    try:
        ver = version("domainrag")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ver = "unknown"
    return EvalResult(
        title=title,
        metadata=Metadata(
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            command=command if command is not None else " ".join(["domainrag", *sys.argv[1:]]),
            domainrag_version=ver,
            python=platform.python_version(),
            platform=platform.platform(terse=True),
            dataset_files={name: DatasetFile(path=str(p), sha256=sha256_file(p)) for name, p in dataset_files.items()},
        ),
    )


def model_info(ws: Any, name: str) -> dict[str, Any]:
    """Where a model name resolves: catalogue (with version and digest), base model, or path/hub id."""
    record = ws.catalog.get("model", name) if ws is not None else None
    if record:
        return {"name": name, "source": "catalogue", "kind": record.get("kind"), "version": record.get("version"),
                "digest": record.get("digest"), "base_model": record.get("base_model"), "uri": record.get("uri")}
    if name in BASE_MODELS:
        return {"name": name, "source": "base model", "kind": BASE_MODELS[name].kind,
                "description": BASE_MODELS[name].description}
    return {"name": name, "source": "path or hub id"}
