"""Answer evaluation: ask every app every question and score the answers against the references.

Apps are anything with ``invoke(question)`` (see :class:`Answerer`), given as loaders so only one
app's model is in memory at a time. An app or judge failure costs its own questions, never the run.
Questions are asked ``concurrency`` at a time, so a backend that batches requests (the transformers
backend's continuous batching, a remote server) decodes several answers per forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Protocol

from domainrag.data.prompts import extract_citations
from domainrag.errors import DomainRagError
from domainrag.evaluation.answers import ANSWER_METRICS, QuestionScore, aggregate_scores, score_answer
from domainrag.evaluation.beir import gold_docs
from domainrag.evaluation.judge import NOT_CONFIGURED, JudgeError
from domainrag.evaluation.result import (
    AnswerDatasetInfo,
    AnswerEntry,
    AnswerQuestion,
    AnswerRun,
    AnswersSection,
    EvalResult,
    Passage,
    new_result,
)
from domainrag.evaluation.spec import DEFAULT_CONCURRENCY

EXCERPT_CHARS = 240
Progress = Callable[[str, int, int], None]
"""``progress(label, done, total)``."""


class Answerer(Protocol):
    """What an app must do to be evaluated: ``invoke(question)`` → object with answer/references/passages.

    An app that also has ``invoke_item(item)`` is given the whole question item instead (e.g. to withhold
    its gold documents, see :mod:`.app_eval`).
    """

    def invoke(self, query: str) -> Any: ...


class Judge(Protocol):
    def describe(self) -> dict[str, Any]: ...

    def judge(self, question: str, answer: str, passages: list[str]) -> Any: ...


class _Unloadable:
    """Stands in for an app that failed to load: every question records the load error."""

    def __init__(self, message: str) -> None:
        self.message = message

    def invoke(self, query: str) -> Any:
        raise RuntimeError(self.message)


def _passage(hit: Any) -> Passage:
    return Passage(doc_id=hit.doc_id, chunk_id=hit.chunk_id, score=round(float(hit.score), 6),
                   text=hit.text[:EXCERPT_CHARS])


def _judge_answer(judge: Judge, question: str, answer: str, passages: list[str], s: QuestionScore) -> bool:
    """Fill the score's faithfulness; False when the judge failed (recorded in the detail)."""
    try:
        v = judge.judge(question, answer, passages)
        s.faithfulness, s.faithfulness_detail = v.score, v.to_dict()
        return True
    except JudgeError as exc:
        s.faithfulness_detail = {"error": exc.message}
    except Exception as exc:  # a judge crash costs this verdict only, never the run
        s.faithfulness_detail = {"error": f"{type(exc).__name__}: {exc}"}
    return False


def _ask(app: Answerer, q: Mapping[str, Any], judge: Judge | None, with_retrieval: bool) -> tuple[AnswerEntry, bool]:
    """One question to one app: (scored entry, whether the judge failed on it)."""
    gold = gold_docs(dict(q))
    try:
        ans = app.invoke_item(q) if hasattr(app, "invoke_item") else app.invoke(q["question"])
    except Exception as exc:  # one failing question must not lose the others
        error = f"{type(exc).__name__}: {exc}"
        s = score_answer(q, None, error=error, gold=gold)
        return AnswerEntry(error=error, score=s, correct=s.correct), False
    passages = list(getattr(ans, "passages", []) or [])
    cited_idx, _ = extract_citations(ans.answer, len(passages))
    cited = [(passages[n - 1].doc_id, passages[n - 1].text) for n in cited_idx]
    s = score_answer(q, ans.answer, cited, [p.text for p in passages], gold=gold,
                     retrieved_docs=[p.doc_id for p in passages] if with_retrieval else None)
    judge_failed = False
    if judge and with_retrieval and not s.refused and ans.answer.strip():
        judge_failed = not _judge_answer(judge, q["question"], ans.answer,
                                         [t for _, t in cited] or [p.text for p in passages], s)
    refs = [{k: r.get(k) for k in ("citation", "document", "chunk_id")} for r in getattr(ans, "references", []) or []]
    entry = AnswerEntry(answer=ans.answer, references=refs, passages=[_passage(p) for p in passages],
                        cited=cited_idx, score=s, correct=s.correct)
    return entry, judge_failed


def _status(with_retrieval: bool, judge: Judge | None, faithfulness: float | None, judge_errors: int) -> dict[str, str]:
    if not with_retrieval:
        return {"faithfulness": "not applicable (no retrieval: no passages to be faithful to)"}
    if judge is None:
        return {"faithfulness": "not measured (no judge configured)"}
    if faithfulness is None:
        return {"faithfulness": f"not measured (judge failed on {judge_errors} answer(s), or nothing to judge)"}
    return {}


def _ask_all(app: Answerer, questions: Sequence[Mapping[str, Any]], judge: Judge | None, with_retrieval: bool,
             concurrency: int, done: Callable[[int], None] | None) -> list[tuple[AnswerEntry, bool]]:
    """Every question to one app, ``concurrency`` at a time; results in question order. ``done(n)`` after each."""
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="domainrag-eval")
    try:
        futures = {pool.submit(_ask, app, q, judge, with_retrieval): i for i, q in enumerate(questions)}
        results: list[Any] = [None] * len(questions)
        for n, future in enumerate(as_completed(futures)):
            results[futures[future]] = future.result()  # _ask records an app's failure; it does not raise
            if done:
                done(n + 1)
    except BaseException:  # Ctrl-C or a bug: stop now, not after every question still queued
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def run_answer_eval(
    apps: Mapping[str, Callable[[], Answerer]],
    items: Sequence[dict[str, Any]],
    *,
    dataset_files: Mapping[str, Path],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    judge: Judge | None = None,
    models: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    command: str | None = None,
    warnings: Sequence[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
) -> EvalResult:
    """Ask every app every question and score the answers; an app error is recorded per question.

    ``apps`` maps a label to a loader; ``configs`` what the report shows about each label;
    ``warnings`` are carried into the result; ``concurrency`` questions are in flight at once (1: one
    after the other). Answers and scores are kept in question order either way.
    """
    if concurrency < 1:
        raise DomainRagError(f"concurrency must be at least 1, not {concurrency}")
    t0 = time.time()
    name = Path(next(iter(dataset_files.values()))).stem if dataset_files else "questions"
    result = new_result(f"Answer evaluation — {name}", dataset_files, command)
    result.warnings.extend(warnings)
    empty = [q["id"] for q in items if not str(q.get("question") or "").strip()]
    if empty:
        result.warnings.append(f"{len(empty)} empty question(s) skipped: {', '.join(empty[:10])}")
    questions = [q for q in items if str(q.get("question") or "").strip()]
    if not questions:
        raise DomainRagError("the questions file holds no question to ask")
    judge_info = judge.describe() if judge else dict(NOT_CONFIGURED)
    per_question: dict[str, dict[str, AnswerEntry]] = {q["id"]: {} for q in questions}
    runs = []
    for label, load in apps.items():
        try:
            app: Answerer = load()
        except Exception as exc:  # a model that fails to load fails each question of its run, not the others
            message = f"could not load '{label}': {type(exc).__name__}: {exc}"
            result.warnings.append(message)
            app = _Unloadable(message)
        with_retrieval = getattr(app, "uses_retrieval", True)  # closed-book runs have no context to check
        t1 = time.time()
        tick = (lambda done, lb=label: progress(f"answer ({lb})", done, len(questions))) if progress else None
        asked = _ask_all(app, questions, judge, with_retrieval, concurrency, tick)
        judge_errors = sum(failed for _, failed in asked)
        scores = [entry.score for entry, _ in asked]
        for q, (entry, _) in zip(questions, asked, strict=True):
            per_question[q["id"]][label] = entry
        metrics = aggregate_scores(scores)
        runs.append(AnswerRun(label=label, config=dict((configs or {}).get(label, {"app": label})), metrics=metrics,
                              status=_status(with_retrieval, judge, metrics["faithfulness"], judge_errors),
                              judge_errors=judge_errors, errors=sum(1 for s in scores if s.error),
                              seconds=round(time.time() - t1, 2)))
        del app
    result.metadata.models = dict(models or {})
    n_unanswerable = sum(1 for q in questions if not gold_docs(q) and ("doc" in q or "docs" in q))
    result.answers = AnswersSection(
        dataset=AnswerDatasetInfo(questions=len(questions), answerable=len(questions) - n_unanswerable,
                                  unanswerable=n_unanswerable),
        metrics=list(ANSWER_METRICS), judge=judge_info, runs=runs,
        questions=[AnswerQuestion(id=q["id"], question=q["question"], reference=q.get("answer"),
                                  short_answer=q.get("short_answer"), gold=gold_docs(q), results=per_question[q["id"]])
                   for q in questions],
    )
    result.metadata.elapsed_s = round(time.time() - t0, 1)
    return result
