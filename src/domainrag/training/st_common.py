"""Shared pieces of the sentence-transformers trainings (embedding and reranker).

Both read (query, positive[, negatives]) pairs, hold out whole queries for evaluation, and train
with a Hugging Face ``Trainer`` subclass that logs to a :class:`Reporter` and checkpoints/resumes
in ``checkpoint_dir``.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

from domainrag.data.formats import Pair, PairsFile, load_pairs
from domainrag.errors import DomainRagError
from domainrag.training import synthetic as syn
from domainrag.training.dp_debug import DebugCallback, RecordingCollator, debug_on
from domainrag.training.hyperparameters import EncoderArgs
from domainrag.training.precision import resolve_precision
from domainrag.training.reporting import Reporter


def split_by_query(pairs: list[Pair], eval_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Deterministic (train, eval) split in which no query appears on both sides."""
    queries = sorted({p.query for p in pairs})
    random.Random(seed).shuffle(queries)
    n_eval = round(len(queries) * eval_fraction) if len(queries) >= 2 and eval_fraction > 0 else 0
    n_eval = min(max(n_eval, 1 if eval_fraction > 0 and len(queries) >= 2 else 0), len(queries) - 1)
    held_out = set(queries[:n_eval])
    return [p for p in pairs if p.query not in held_out], [p for p in pairs if p.query in held_out]


def load_and_split(
    args: EncoderArgs, reporter: Reporter, hint: str, dataset: Path | None = None
) -> tuple[PairsFile, list[Pair], list[Pair]]:
    """(loaded pairs, train, eval) split by query; fewer than 2 training pairs raise with ``hint``.

    ``dataset`` overrides ``args.dataset`` (synthetic pairs generated from a corpus).
    """
    loaded = load_pairs(Path(dataset or args.dataset))
    if loaded.duplicates_dropped:
        reporter.log(f"dropped {loaded.duplicates_dropped} duplicate (query, positive) pairs")
    train, evals = split_by_query(loaded.pairs, args.eval_fraction, args.seed)
    if len(train) < 2:
        raise DomainRagError(
            f"only {len(train)} training pair(s) after holding out {len(evals)} for evaluation",
            hint=hint,
        )
    return loaded, train, evals


def is_main_process() -> bool:
    """True outside data parallelism and in its process of rank 0 (the one that saves the artifact)."""
    return int(os.environ.get("RANK", "0")) == 0


class ReporterCallback(TrainerCallback):
    """Forwards the trainer's numeric logs (loss, learning_rate, ...) to a :class:`Reporter`."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def on_log(self, _args: Any, state: Any, _control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
        values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
        if values:
            self.reporter.metric(state.global_step, **values)


def training_kwargs(args: EncoderArgs, out: Path) -> dict[str, Any]:
    """Training-arguments keywords common to both trainers (checkpoints only with ``checkpoint_dir``)."""
    return {
        "output_dir": str(out),
        "num_train_epochs": args.epochs,
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "warmup_steps": args.warmup_ratio,  # transformers 5: a value < 1 is a fraction of all steps
        "seed": args.seed,
        "data_seed": args.seed,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "steps" if args.checkpoint_dir is not None else "no",
        "save_steps": args.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        "bf16": resolve_precision(args.precision) == "bf16",
    }


def train_with_resume(
    args: EncoderArgs,
    reporter: Reporter,
    make_trainer: Callable[[dict[str, Any], list[Any]], Any],
    *,
    scratch_prefix: str,
    n_rows: int,
    extra_stats: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the trainer with ``make_trainer(training kwargs, callbacks)``, resume if asked, train.

    Returns ``steps``, ``train_loss``, ``train_seconds``, ``resumed_from``, then ``extra_stats``,
    then ``pairs_per_s`` (``n_rows`` training rows per epoch).
    """
    with tempfile.TemporaryDirectory(prefix=scratch_prefix) as scratch:
        out = Path(args.checkpoint_dir) if args.checkpoint_dir is not None else Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        trainer = make_trainer(training_kwargs(args, out), [ReporterCallback(reporter)])
        trainer.remove_callback(PrinterCallback)  # logs go to the reporter, not stdout
        if debug_on():  # data-parallel test hooks (off in normal runs)
            trainer.data_collator = RecordingCollator(trainer.data_collator)
            trainer.add_callback(DebugCallback())
        resume_from = get_last_checkpoint(str(out)) if args.resume and args.checkpoint_dir is not None else None
        if args.resume and resume_from is None:
            reporter.log(f"no checkpoint in {args.checkpoint_dir}; starting from scratch")
        elif resume_from is not None:
            reporter.log(f"resuming from {resume_from}")
        t0 = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=resume_from)
        seconds = time.perf_counter() - t0
    return {
        "steps": int(output.global_step),
        "train_loss": float(output.training_loss),
        "train_seconds": seconds,
        "resumed_from": resume_from,
        "precision": resolve_precision(args.precision),
        **(extra_stats or {}),
        "pairs_per_s": n_rows * args.epochs / seconds if seconds > 0 else 0.0,
    }


def log_eval_metrics(reporter: Reporter, label: str, step: int, metrics: dict[str, float]) -> None:
    """Log ``label: k=v, ...`` and record ``eval_<k>`` metrics at ``step``; nothing for no metrics."""
    if metrics:
        reporter.log(f"{label}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
        reporter.metric(step, **{f"eval_{k}": v for k, v in metrics.items()})


def jsonable_args(args: EncoderArgs) -> dict[str, Any]:
    """The run arguments as JSON-ready values (paths as strings)."""
    return args.model_dump(mode="json")


def finite_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """``stats`` without NaN floats (they are not valid JSON)."""
    return {k: v for k, v in stats.items() if not (isinstance(v, float) and math.isnan(v))}


# ---------------------------------------------------------------------------------------------
# Texts past the model's limit: the tokenizer truncates them silently, so the job log says so.


def count_over_limit(tokenizer: Any, texts: list[str] | list[tuple[str, str]], limit: int, batch: int = 256) -> int:
    """How many texts (or text pairs) tokenize, special tokens included, to more than ``limit`` tokens."""
    over = 0
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        if chunk and isinstance(chunk[0], tuple):
            enc = tokenizer([a for a, _ in chunk], [b for _, b in chunk], truncation=False)  # type: ignore[misc]
        else:
            enc = tokenizer(list(chunk), truncation=False)
        over += sum(1 for ids in enc["input_ids"] if len(ids) > limit)
    return over


def warn_truncation(reporter: Reporter, over: int, total: int, limit: int, what: str) -> None:
    """Log how many texts the model will cut at ``limit`` tokens (the tokenizer truncates silently)."""
    if over:
        reporter.log(
            f"WARNING: {over} of {total} {what} exceed the model's limit of {limit} tokens and are truncated; "
            "shorten them (e.g. smaller chunks) if the cut-off part matters"
        )


def prepare_pairs(args: EncoderArgs, reporter: Reporter, embedder: Any) -> tuple[Path, dict[str, Any] | None]:
    """(pairs file to train on, synthetic counts or None): the dataset itself, or pairs generated from a corpus.

    Generated pairs go to ``synthetic_pairs.jsonl`` next to ``output_dir`` (the job folder in the lake),
    so they can be inspected and reused as an ordinary pairs dataset.
    """
    dataset = Path(args.dataset)
    mode = syn.choose_mode(args.synthetic_queries, dataset)
    if mode is None:
        return dataset, None
    passages = syn.load_passages(dataset)
    reporter.log(
        f"dataset is a document corpus ({len(passages)} passages): generating synthetic queries ({mode}"
        f"{'' if args.synthetic_queries else ', auto-detected'})"
    )
    config = syn.SyntheticConfig(
        mode=mode,
        llm=args.synthetic_llm,
        queries_per_passage=args.synthetic_per_passage,
        max_passages=args.synthetic_max_passages,
        roundtrip_k=args.synthetic_roundtrip_k,
        seed=args.seed,
    )
    report = syn.generate_pairs(passages, config, embedder=embedder, log=reporter.log)
    if report.kept < 2:
        raise DomainRagError(
            f"only {report.kept} synthetic pair(s) survived deduplication and filtering ({report.generated} generated)",
            hint="add documents, raise synthetic_roundtrip_k (or 0 to disable that filter), or try the other mode",
        )
    path = syn.write_pairs(report.pairs, Path(args.output_dir).parent / syn.PAIRS_FILE)
    reporter.log(f"synthetic pairs written to {path}")
    return path, {**report.counts(), "pairs_file": str(path)}
