"""The SFT fit: TRL's ``SFTTrainer`` on our pre-tokenized, assistant-only-labelled conversations.

The Trainer brings the loop, the token-weighted loss over gradient accumulation, gradient clipping,
the cosine schedule, bf16 autocast, checkpoints with exact resume, early stopping
(``EarlyStoppingCallback`` + ``load_best_model_at_end``) and data parallelism / DeepSpeed / FSDP from
``accelerate launch``. What is ours: the held-out loss before training, the run's fingerprint check on
resume, token counting, and reporting to the job's log and metrics (main process only).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import SFTConfig, SFTTrainer

from domainrag.errors import DomainRagError
from domainrag.training.dp_debug import DebugCallback, debug_on
from domainrag.training.hyperparameters import SFTArgs
from domainrag.training.precision import resolve_precision
from domainrag.training.reporting import Reporter
from domainrag.training.sft_checkpoints import last_checkpoint, read_run_state, write_run_state
from domainrag.training.sft_data import IGNORE_INDEX, CountingCollator, EncodedChat, to_dataset


@dataclass
class SFTSetup:
    """Everything fit() needs, built once by setup()."""

    tokenizer: Any
    model: Any
    train: list[EncodedChat]
    eval: list[EncodedChat]
    peft_config: Any
    fingerprint: str
    dropped: int = 0


class ReportCallback(TrainerCallback):
    """Forwards the trainer's logs to the job's :class:`Reporter`, once (world process zero only)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def on_log(self, _args: Any, state: Any, _control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        values = {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if "loss" in values:
            values = {k: v for k, v in values.items() if k in ("loss", "learning_rate", "grad_norm", "num_tokens")}
            step, total = state.global_step, state.max_steps
            if step == 1 or step % 10 == 0 or step == total:
                self.reporter.log(f"step {step}/{total} loss {values['loss']:.4f} lr {values['learning_rate']:.2e}")
        elif "eval_loss" in values:
            values = {"eval_loss": values["eval_loss"]}
        else:
            return
        self.reporter.metric(state.global_step, **values)


class EarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, recording why it stopped for the metrics and the model card."""

    detail: str | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float], **kw: Any) -> None:
        super().on_evaluate(args, state, control, metrics, **kw)
        if control.should_training_stop and self.detail is None:
            self.detail = (
                f"early stopping at step {state.global_step}: held-out loss did not improve by more than "
                f"{self.early_stopping_threshold:g} for {self.early_stopping_patience} evaluation(s) "
                f"(best {state.best_metric:.4f} at step {state.best_global_step}, now {metrics['eval_loss']:.4f})"
            )


class LabelledOnlySFTTrainer(SFTTrainer):
    """SFTTrainer whose loss, off CUDA, projects only the positions that have a label through the LM head.

    TRL's fused LM head scores just the labelled positions with its Triton kernel (CUDA/XPU); elsewhere it
    runs every position through the vocabulary-sized head. With RAG prompts a few percent of the tokens
    are labelled, and on a 135M model the head is a fifth of the forward, so on CPU the loss is computed
    here with transformers' ``logits_to_keep`` instead (same value: summed cross-entropy over labelled
    tokens / their count over the whole accumulated batch, as the Trainer normalises it).
    """

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if return_outputs or inputs["input_ids"].device.type in ("cuda", "xpu"):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        targets = inputs["labels"][:, 1:]
        keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
        forward = {k: v for k, v in inputs.items() if k != "labels"}
        logits = model(**forward, use_cache=False, logits_to_keep=keep).logits
        targets = targets[:, keep]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
        loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages, the count spans all processes
        return loss


def sft_config(args: SFTArgs, out: Path, has_eval: bool) -> SFTConfig:
    """TrainingArguments for one run, from the job's hyper-parameters."""
    periodic = bool(args.eval_every and has_eval)
    best = periodic and args.early_stopping_patience is not None and args.restore_best
    checkpoints = args.checkpoint_dir is not None or best
    return SFTConfig(
        output_dir=str(out),
        max_steps=args.max_steps or -1,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_ratio,  # transformers 5: a value < 1 is a fraction of all steps
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        data_seed=args.seed,
        bf16=resolve_precision(args.precision) == "bf16",
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=args.gradient_checkpointing,
        # rows are tokenized and truncated by sft_data; packing = TRL's padding-free batches
        max_length=None,
        padding_free=args.packing,
        remove_unused_columns=False,  # keeps example_id for CountingCollator
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        eval_strategy="steps" if periodic else "no",
        eval_steps=args.eval_every if periodic else None,
        # restoring the best adapter needs a checkpoint at every evaluation
        save_strategy="steps" if checkpoints else "no",
        save_steps=args.eval_every if best else args.save_every,
        save_total_limit=args.keep_checkpoints or None,
        load_best_model_at_end=best,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        restore_callback_states_from_checkpoint=True,
    )


def build_trainer(
    args: SFTArgs, s: SFTSetup, out: Path, reporter: Reporter
) -> tuple[SFTTrainer, EarlyStopping | None]:
    """The SFTTrainer for ``s``; LoRA (if any) is applied by TRL from ``s.peft_config``."""
    stopper = None
    callbacks: list[Any] = [ReportCallback(reporter)]
    if args.early_stopping_patience is not None and args.eval_every and s.eval:
        stopper = EarlyStopping(args.early_stopping_patience, args.early_stopping_min_delta)
        callbacks.append(stopper)
    try:
        trainer = LabelledOnlySFTTrainer(
            model=s.model,
            args=sft_config(args, out, bool(s.eval)),
            train_dataset=to_dataset(s.train, with_ids=True),
            eval_dataset=to_dataset(s.eval) if s.eval else None,
            processing_class=s.tokenizer,
            peft_config=s.peft_config,
            callbacks=callbacks,
        )
    except ValueError as exc:
        if s.peft_config is None or "target modules" not in str(exc).lower():
            raise
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in s.model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise DomainRagError(
            f"LoRA target modules {list(args.target_modules)} do not fit this model ({exc})",
            hint=f"choose among its linear layers: {', '.join(linear)}",
        ) from None
    trainer.remove_callback(PrinterCallback)  # logs go to the reporter, not stdout
    trainer.data_collator = CountingCollator(trainer.data_collator)
    if debug_on():  # data-parallel test hooks (off in normal runs)
        trainer.add_callback(DebugCallback())
    return trainer, stopper


def _total(trainer: SFTTrainer, value: int) -> int:
    """``value`` summed over the data-parallel processes."""
    if trainer.accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], device=trainer.accelerator.device)
    return int(trainer.accelerator.reduce(t, reduction="sum").item())


def fit(args: SFTArgs, s: SFTSetup, reporter: Reporter) -> tuple[dict[str, Any], Any]:
    """Train; returns (metrics, trainer) — the trainer holds the trained model."""
    with tempfile.TemporaryDirectory(prefix="domainrag-sft-") as scratch:
        out = Path(args.checkpoint_dir) if args.checkpoint_dir is not None else Path(scratch)
        trainer, stopper = build_trainer(args, s, out, reporter)
        main = trainer.accelerator.is_main_process
        resume = last_checkpoint(out) if args.resume and args.checkpoint_dir is not None else None
        stats: dict[str, Any] = {"eval_loss_before": None}
        if args.resume and resume is None:
            reporter.log(f"no checkpoint in {args.checkpoint_dir}; starting from scratch")
        if resume is not None:
            stats.update(read_run_state(out, s.fingerprint))
            reporter.log(f"resuming from {resume[1]} at step {resume[0] + 1}")
        elif s.eval:
            stats["eval_loss_before"] = trainer.evaluate()["eval_loss"]
            reporter.log(f"eval loss before training: {stats['eval_loss_before']:.4f}")
        if main and args.checkpoint_dir is not None:
            write_run_state(out, s.fingerprint, eval_loss_before=stats["eval_loss_before"])
        t0 = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
        seconds = time.perf_counter() - t0
        eval_after = trainer.evaluate()["eval_loss"] if s.eval else None
    state = trainer.state
    losses = [log["loss"] for log in state.log_history if "loss" in log]
    collator = trainer.data_collator
    tokens = _total(trainer, collator.tokens)
    stats.pop("fingerprint", None)
    if eval_after is not None:
        reporter.log(f"eval loss after training: {eval_after:.4f}")
    early = stopper.detail if stopper is not None else None
    metrics: dict[str, Any] = {
        **stats,
        "train_loss_first": losses[0] if losses else math.nan,
        "train_loss_last": losses[-1] if losses else math.nan,
        "eval_loss_after": eval_after,
        "steps": int(output.global_step),
        "resumed_from": resume[0] if resume else None,
        "stop_reason": "early_stopping" if early else "max_steps",
        "stop_detail": early or f"completed all {state.max_steps} steps",
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "precision": resolve_precision(args.precision),
        "tokens": tokens,
        "padded_tokens": _total(trainer, collator.padded),
        "labelled_tokens": _total(trainer, collator.labelled),
        "train_seconds": seconds,
        "processes": trainer.accelerator.num_processes,
    }
    if state.best_metric is not None:
        metrics.update(best_eval_loss=state.best_metric, best_step=state.best_global_step)
        if trainer.args.load_best_model_at_end:
            metrics["restored_best_step"] = state.best_global_step
    return metrics, trainer
