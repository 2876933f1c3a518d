"""The SFT training loop: a plain torch loop over LoRA parameters, with evaluation and early stopping.

* The held-out loss before and after training and, with ``eval_every``, every N optimizer steps.
* Early stopping: after ``early_stopping_patience`` evaluations without an improvement of more than
  ``early_stopping_min_delta`` training stops, the best evaluation's adapter is restored, and the
  reason is recorded (``stop_reason`` / ``stop_detail`` in the metrics). The tracking state is
  checkpointed, so resume stays exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from torch.nn import functional as F
from transformers import get_cosine_schedule_with_warmup

from domainrag.training.hyperparameters import SFTArgs
from domainrag.training.precision import autocast, resolve_precision
from domainrag.training.reporting import Reporter
from domainrag.training.sft_checkpoints import restore_checkpoint, rng_state, save_checkpoint
from domainrag.training.sft_data import IGNORE_INDEX, EncodedChat, collate, collate_packed, micro_batch_indices


@dataclass
class SFTSetup:
    """Everything fit() needs, built once by setup()."""

    tokenizer: Any
    model: Any
    train: list[EncodedChat]
    eval: list[EncodedChat]
    pad_id: int
    device: torch.device
    total_steps: int
    fingerprint: str
    dropped: int = 0


def loss_sum(model: Any, batch: dict[str, torch.Tensor], precision: str = "fp32") -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and their count.

    Only positions that predict a labelled token go through the LM head (``logits_to_keep``):
    with RAG prompts that is a few percent of the sequence, which saves most of the
    (batch x length x vocabulary) logits memory. The forward runs under bf16 autocast when
    ``precision`` resolves to bf16; the loss is always computed in fp32.
    """
    targets = batch["labels"][:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    # use_cache=False: no KV cache is wanted here, and with one transformers ignores packed position ids
    with autocast(precision, batch["input_ids"].device.type):
        logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    targets = targets[:, keep]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, int((targets != IGNORE_INDEX).sum())


@torch.no_grad()
def evaluate_loss(model: Any, examples: Sequence[EncodedChat], batch_size: int, pad_id: int,
                  precision: str = "fp32") -> float | None:
    """Mean assistant-token loss over ``examples`` (None when there are none)."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        loss, n = loss_sum(model, collate(examples[i : i + batch_size], pad_id, device), precision)
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def fit(args: SFTArgs, s: SFTSetup, reporter: Reporter) -> dict[str, Any]:
    """Train the LoRA adapter; checkpoint every ``save_every`` steps; resume when asked."""
    model = s.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = round(args.warmup_ratio * s.total_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, s.total_steps)

    step, resumed_from = 0, None
    stats: dict[str, Any] = {"train_loss_first": math.nan, "eval_loss_before": None}
    if args.resume and args.checkpoint_dir is not None:
        restored = restore_checkpoint(Path(args.checkpoint_dir), model, optimizer, scheduler, s.fingerprint)
        if restored is None:
            reporter.log(f"no checkpoint in {args.checkpoint_dir}; starting from scratch")
        else:
            step, stats, ckpt = restored
            resumed_from = step
            reporter.log(f"resuming from {ckpt} at step {step + 1}/{s.total_steps}")

    if resumed_from is None:
        stats["eval_loss_before"] = evaluate_loss(model, s.eval, args.batch_size, s.pad_id, args.precision)
        if stats["eval_loss_before"] is not None:
            reporter.log(f"eval loss before training: {stats['eval_loss_before']:.4f}")
            reporter.metric(0, eval_loss=stats["eval_loss_before"])

    model.train()
    if args.packing:
        make_batch = lambda b: collate_packed(b, s.pad_id, args.max_seq_len, s.device)  # noqa: E731
    else:
        make_batch = lambda b: collate(b, s.pad_id, s.device)  # noqa: E731
    tokens = padded = labelled = 0
    t0 = time.perf_counter()
    last_loss = stats.get("train_loss_last", math.nan)
    while step < s.total_steps and stats.get("stop_reason") is None:
        micro = [
            make_batch([s.train[i] for i in micro_batch_indices(len(s.train), args.batch_size, args.seed, m)])
            for m in range(step * args.grad_accum, (step + 1) * args.grad_accum)
        ]
        n_labels = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)
        step_loss = 0.0
        for batch in micro:
            batch_loss, _n = loss_sum(model, batch, args.precision)
            (batch_loss / max(n_labels, 1)).backward()
            step_loss += batch_loss.item()
            tokens += int(batch["n_tokens"] if "n_tokens" in batch else batch["attention_mask"].sum())
            padded += batch["input_ids"].numel()
        labelled += n_labels
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last_loss = stats["train_loss_last"] = step_loss / max(n_labels, 1)
        if step == 1:
            stats["train_loss_first"] = last_loss
        if args.eval_every and s.eval and step % args.eval_every == 0 and step < s.total_steps:
            eval_loss = evaluate_loss(model, s.eval, args.batch_size, s.pad_id, args.precision)
            assert eval_loss is not None
            reporter.metric(step, eval_loss=eval_loss)
            _track_best(args, stats, step, eval_loss, model, reporter)
        if args.checkpoint_dir is not None and (
            step % args.save_every == 0 or step == s.total_steps or stats.get("stop_reason") is not None
        ):
            state = {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "fingerprint": s.fingerprint,
                "stats": stats,
            }
            save_checkpoint(Path(args.checkpoint_dir), model, state, args.keep_checkpoints)
        reporter.metric(step, loss=last_loss, learning_rate=lr)
        if step == 1 or step % 10 == 0 or step == s.total_steps:
            reporter.log(f"step {step}/{s.total_steps} loss {last_loss:.4f} lr {lr:.2e}")
    seconds = time.perf_counter() - t0
    if stats.get("stop_reason") is None:
        stats["stop_reason"] = "max_steps"
        stats["stop_detail"] = f"completed all {s.total_steps} steps"

    eval_after = evaluate_loss(model, s.eval, args.batch_size, s.pad_id, args.precision)
    if eval_after is not None:
        reporter.log(f"eval loss after training: {eval_after:.4f}")
        reporter.metric(step, eval_loss=eval_after)
        eval_after = _restore_best(args, stats, step, eval_after, model, reporter)
    return {
        **{k: v for k, v in stats.items() if k != "best_adapter"},
        "train_loss_last": last_loss,
        "eval_loss_after": eval_after,
        "steps": step,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "precision": resolve_precision(args.precision),
        "tokens": tokens,
        "padded_tokens": padded,
        "labelled_tokens": labelled,
        "train_seconds": seconds,
        "resumed_from": resumed_from,
    }


def _early_stopping(args: SFTArgs) -> bool:
    return args.early_stopping_patience is not None


def _track_best(
    args: SFTArgs, stats: dict[str, Any], step: int, eval_loss: float, model: Any, reporter: Reporter
) -> None:
    """Record a periodic evaluation; set ``stop_reason`` once patience runs out.

    Everything lives in ``stats`` (saved in every checkpoint, best adapter weights included), so a
    resumed run makes the same stopping decision as an uninterrupted one.
    """
    best = stats.get("best_eval_loss")
    if best is None or eval_loss < best - args.early_stopping_min_delta:
        stats.update(best_eval_loss=eval_loss, best_step=step, evals_without_improvement=0)
        if _early_stopping(args) and args.restore_best:
            stats["best_adapter"] = {k: v.detach().clone().cpu() for k, v in get_peft_model_state_dict(model).items()}
        return
    stats["evals_without_improvement"] = stats.get("evals_without_improvement", 0) + 1
    patience = args.early_stopping_patience
    if patience is not None and stats["evals_without_improvement"] >= patience:
        stats["stop_reason"] = "early_stopping"
        stats["stop_detail"] = (
            f"early stopping at step {step}: held-out loss did not improve by more than "
            f"{args.early_stopping_min_delta:g} for {patience} evaluation(s) "
            f"(best {best:.4f} at step {stats['best_step']}, now {eval_loss:.4f})"
        )
        reporter.log(stats["stop_detail"])


def _restore_best(
    args: SFTArgs, stats: dict[str, Any], step: int, eval_after: float, model: Any, reporter: Reporter
) -> float:
    """With early stopping and ``restore_best``: put back the best evaluation's adapter weights."""
    best = stats.get("best_eval_loss")
    if best is None or eval_after < best - args.early_stopping_min_delta:
        stats.update(best_eval_loss=eval_after, best_step=step)
        return eval_after
    if not (_early_stopping(args) and args.restore_best and "best_adapter" in stats):
        return eval_after
    set_peft_model_state_dict(model, stats["best_adapter"])
    stats["restored_best_step"] = stats["best_step"]
    reporter.log(f"restored the adapter of step {stats['best_step']} (held-out loss {best:.4f})")
    reporter.metric(step, eval_loss=best)
    return float(best)
