"""Answer evaluation of catalogued RAG apps: an :class:`~domainrag.evaluation.spec.AnswerEvalSpec` run
against a workspace (apps, their models and indexes, closed-book runs, the faithfulness judge)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from domainrag.data.prompts import NOT_FOUND_ANSWER
from domainrag.evaluation.answer_eval import Judge, Progress, run_answer_eval
from domainrag.evaluation.beir import gold_docs, read_questions
from domainrag.evaluation.closed_book import LABEL_SUFFIX, ClosedBookApp, closed_book_config
from domainrag.evaluation.judge import OpenAIJudge, judge_from_catalogue
from domainrag.evaluation.result import EvalResult, model_info
from domainrag.evaluation.spec import AnswerEvalSpec, JudgeSpec
from domainrag.serving.apps import AppRecord, gate_status, load_app
from domainrag.serving.rag import RagAnswer, RagApp

WITHHELD_SUFFIX = "~withheld"
WITHHOLD_EXTRA = 20
"""Extra passages retrieved for a withheld-gold question, so that top_k remain once the gold ones are dropped."""
NO_GATE_SUFFIX = " (no gate)"


class WithholdingApp:
    """An app asked whole question items: one with ``withhold`` (doc ids) is answered from its passages
    without those documents (the "negative rejection" protocol: the answer is not in what the app sees)."""

    def __init__(self, rag: RagApp) -> None:
        self.rag = rag

    def invoke(self, query: str) -> RagAnswer:
        return self.rag.invoke(query)

    def invoke_item(self, item: Mapping[str, Any]) -> RagAnswer:
        withheld = set(item.get("withhold") or ())
        if not withheld:
            return self.rag.invoke(item["question"])
        k = self.rag.retriever.config.top_k
        hits = [h for h in self.rag.retrieve(item["question"], top_k=k + WITHHOLD_EXTRA) if h.doc_id not in withheld]
        return self.rag.answer_from(item["question"], hits[:k])


def withheld_items(items: Sequence[Mapping[str, Any]], n: int, not_found: str) -> list[dict[str, Any]]:
    """Copies of the first ``n`` answerable questions with their gold documents withheld: now unanswerable."""
    out = []
    for q in [q for q in items if gold_docs(dict(q))][:n]:
        out.append({"id": f"{q['id']}{WITHHELD_SUFFIX}", "question": q["question"], "answer": not_found,
                    "short_answer": "", "doc": None, "withhold": gold_docs(dict(q))})
    return out


def _without_gate(rag: RagApp) -> RagApp:
    rag.gate = None
    return rag


def app_config(ws: Any, name: str) -> dict[str, Any]:
    """What the report shows about an app: model, index, embedding model, retrieval and generation settings."""
    record = ws.catalog.require("app", name)
    retrieval = dict(record.get("retrieval") or {})
    index = ws.catalog.get("index", retrieval.get("index", "")) or {}
    gen = dict(record.get("generation") or {})
    gen.pop("system_prompt", None)  # long; the app record has it
    gen.pop("not_found_answer", None)
    return {"app": name, "model": record.get("model"), "index": retrieval.get("index"),
            "embedding_model": index.get("embedding_model"), "mode": retrieval.get("mode"),
            "top_k": retrieval.get("top_k"), **{f"generation.{k}": v for k, v in gen.items()},
            "gate": gate_status(AppRecord.model_validate(record))}


def unknown_gold_warnings(ws: Any, items: Sequence[Mapping[str, Any]], configs: Mapping[str, Mapping[str, Any]],
                          source: str) -> list[str]:
    """One warning per app index that lacks gold documents the questions name (they can never be retrieved,
    so those questions' context hit and citation precision are 0 whatever the app does)."""
    golds = sorted({d for q in items for d in gold_docs(dict(q))})
    out, checked = [], {}
    for label, cfg in configs.items():
        index = cfg.get("index")
        if not index or not golds:
            continue
        if index not in checked:
            store = ws.store(index)
            checked[index] = [d for d in golds if not store.ids_for_document(d)]
        missing = checked[index]
        if missing:
            n_q = sum(1 for q in items if any(d in missing for d in gold_docs(dict(q))))
            out.append(f"{len(missing)} gold document(s) named by {n_q} question(s) of {source} are not in index "
                       f"'{index}' of {label}: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    return out


def make_judge(ws: Any, spec: JudgeSpec) -> Judge:
    """A judge at ``spec.url`` when given, else the catalogue's ``spec.model`` served as the catalogue says."""
    if spec.url:
        return OpenAIJudge(spec.url, spec.model)
    return judge_from_catalogue(ws, spec.model, threshold=spec.threshold)


def evaluate_apps(
    ws: Any, spec: AnswerEvalSpec, questions: Path, *, progress: Progress | None = None, command: str | None = None,
) -> EvalResult:
    """Ask each app of ``spec`` the questions of ``questions`` (a .jsonl file) and score the answers."""
    items = read_questions(questions)[: spec.limit or None]
    if spec.withhold_gold:
        items = items + withheld_items(items, spec.withhold_gold, NOT_FOUND_ANSWER)
    configs = {name: app_config(ws, name) for name in spec.apps}  # fails fast on an unknown app
    models: dict[str, Any] = {}
    for cfg in configs.values():
        for m in (cfg.get("model"), cfg.get("embedding_model")):
            if m:
                models[m] = model_info(ws, m)
    warnings = unknown_gold_warnings(ws, items, configs, questions.name)
    loaders: dict[str, Any] = {}
    for name in spec.apps:
        loaders[name] = lambda n=name: WithholdingApp(load_app(ws, n))
        if spec.compare_gate:
            configs[name + NO_GATE_SUFFIX] = {**configs[name], "gate": "off"}
            loaders[name + NO_GATE_SUFFIX] = lambda n=name: WithholdingApp(_without_gate(load_app(ws, n)))
        if spec.no_retrieval:
            label = name + LABEL_SUFFIX
            not_found = (ws.catalog.require("app", name).get("generation") or {}).get("not_found_answer")
            configs[label] = closed_book_config(configs[name], not_found or NOT_FOUND_ANSWER)
            loaders[label] = lambda n=name: ClosedBookApp(load_app(ws, n))
    judge = make_judge(ws, spec.judge) if spec.judge else None
    if spec.judge and not spec.judge.url:
        models[spec.judge.model] = model_info(ws, spec.judge.model)
    return run_answer_eval(loaders, items, dataset_files={questions.name: questions}, configs=configs, judge=judge,
                           models=models, progress=progress, warnings=warnings, command=command,
                           concurrency=spec.concurrency)
