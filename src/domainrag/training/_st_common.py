"""Shared pieces of the sentence-transformers trainings (embedding and reranker).

Both read (query, positive[, negatives]) pairs, hold out whole queries for evaluation, and train
with a Hugging Face ``Trainer`` subclass that logs to a :class:`Reporter` and checkpoints/resumes
in ``checkpoint_dir``.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch

from domainrag.data.formats import Pair, PairsFile, load_pairs
from domainrag.errors import DomainRagError
from domainrag.training.reporting import Reporter


class TrainArgs(Protocol):
    """The fields of ``EmbeddingArgs`` / ``RerankerArgs`` the shared steps read."""

    dataset: Path
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    eval_fraction: float
    seed: int
    checkpoint_dir: Path | None
    resume: bool
    save_steps: int


def split_by_query(pairs: list[Pair], eval_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Deterministic (train, eval) split in which no query appears on both sides."""
    queries = sorted({p.query for p in pairs})
    random.Random(seed).shuffle(queries)
    n_eval = round(len(queries) * eval_fraction) if len(queries) >= 2 and eval_fraction > 0 else 0
    n_eval = min(max(n_eval, 1 if eval_fraction > 0 and len(queries) >= 2 else 0), len(queries) - 1)
    held_out = set(queries[:n_eval])
    return [p for p in pairs if p.query not in held_out], [p for p in pairs if p.query in held_out]


def load_and_split(args: TrainArgs, reporter: Reporter, hint: str) -> tuple[PairsFile, list[Pair], list[Pair]]:
    """(loaded pairs, train, eval) split by query; fewer than 2 training pairs raise with ``hint``."""
    loaded = load_pairs(Path(args.dataset))
    if loaded.duplicates_dropped:
        reporter.log(f"dropped {loaded.duplicates_dropped} duplicate (query, positive) pairs")
    train, evals = split_by_query(loaded.pairs, args.eval_fraction, args.seed)
    if len(train) < 2:
        raise DomainRagError(
            f"only {len(train)} training pair(s) after holding out {len(evals)} for evaluation",
            hint=hint,
        )
    return loaded, train, evals


def reporter_callback(reporter: Reporter) -> Any:
    """A ``TrainerCallback`` forwarding the trainer's numeric logs to ``reporter``."""
    from transformers import TrainerCallback

    class _ToReporter(TrainerCallback):
        """Forwards the trainer's numeric logs (loss, learning_rate, ...) to the reporter."""

        def on_log(self, _args: Any, state: Any, _control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            if values:
                reporter.metric(state.global_step, **values)

    return _ToReporter()


def training_kwargs(args: TrainArgs, out: Path) -> dict[str, Any]:
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
    }


def train_with_resume(
    args: TrainArgs,
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
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    with tempfile.TemporaryDirectory(prefix=scratch_prefix) as scratch:
        out = Path(args.checkpoint_dir) if args.checkpoint_dir is not None else Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        trainer = make_trainer(training_kwargs(args, out), [reporter_callback(reporter)])
        trainer.remove_callback(PrinterCallback)  # logs go to the reporter, not stdout
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
        **(extra_stats or {}),
        "pairs_per_s": n_rows * args.epochs / seconds if seconds > 0 else 0.0,
    }


def log_eval_metrics(reporter: Reporter, label: str, step: int, metrics: dict[str, float]) -> None:
    """Log ``label: k=v, ...`` and record ``eval_<k>`` metrics at ``step``; nothing for no metrics."""
    if metrics:
        reporter.log(f"{label}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
        reporter.metric(step, **{f"eval_{k}": v for k, v in metrics.items()})


def jsonable_args(args: Any) -> dict[str, Any]:
    """The args dataclass as a dict with paths as strings."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()}


def finite_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """``stats`` without NaN floats (they are not valid JSON)."""
    return {k: v for k, v in stats.items() if not (isinstance(v, float) and math.isnan(v))}
