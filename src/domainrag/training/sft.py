"""LoRA supervised fine-tuning of a chat LLM on its own chat template.

Flow (litgpt style): :func:`run_sft` = setup (tokenize, split, wrap the base model with peft) →
fit (a plain torch loop) → save (adapter, optional merged model, ``domainrag_sft.json``).

* Loss is computed on assistant tokens only: every assistant turn's content plus the template's
  end-of-turn token; system/user turns, role headers and padding are masked with -100. Spans are
  found by rendering the conversation prefix with the chat template and mapping character
  positions to tokens, so it works for any template that renders turns as a growing prefix.
* The data order is a pure function of ``seed`` and the micro-batch index, and checkpoints hold
  the adapter, optimizer, scheduler, step and RNG states, so ``resume=True`` continues exactly
  where the last checkpoint left off: no batch is repeated or skipped, and the final weights
  match an uninterrupted run.
* ``packing=True`` concatenates each micro-batch's conversations into rows of at most
  ``max_seq_len`` tokens with position ids restarting per conversation (transformers'
  ``DataCollatorWithFlattening`` and its packed-sequence attention mask): the same labels and loss
  as padding, fewer computed positions when conversations are short.
* Early stopping: the held-out loss every ``eval_every`` steps; after ``early_stopping_patience``
  evaluations without an improvement of more than ``early_stopping_min_delta`` training stops, the
  best evaluation's adapter is restored, and the reason is recorded (``stop_reason`` /
  ``stop_detail`` in the metrics). The tracking state is checkpointed, so resume stays exact.
* :func:`build_rag_sft_examples` turns QA items into RAFT-style grounded examples that use the
  same prompt layout as serving (:func:`domainrag.data.prompts.build_messages`).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from domainrag.data.formats import read_chat_dataset
from domainrag.errors import DomainRagError
from domainrag.training.precision import autocast, resolve_precision
from domainrag.training.reporting import Reporter
from domainrag.training.sft_params import SFTArgs

IGNORE_INDEX = -100
ADAPTER_SUBDIR = "adapter"
MERGED_SUBDIR = "merged"
METADATA_FILE = "domainrag_sft.json"
_STATE_FILE = "training_state.pt"
_CKPT_PREFIX = "step-"


@dataclass
class SFTResult:
    """Where the run saved its outputs, and how it went."""

    adapter_dir: Path
    merged_dir: Path | None
    train_loss_first: float
    train_loss_last: float
    eval_loss_before: float | None
    eval_loss_after: float | None
    steps: int
    tokens_per_s: float
    seconds: float
    n_train: int = 0
    n_eval: int = 0
    resumed_from: int | None = None


@dataclass
class EncodedChat:
    """One tokenized conversation: labels are -100 except on assistant tokens."""

    input_ids: list[int]
    labels: list[int]


# ---------------------------------------------------------------------------------------------
# Tokenization with assistant-only labels


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def assistant_char_spans(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Rendered conversation and the (start, end) character span of each assistant turn.

    A span starts after the assistant header (what ``add_generation_prompt`` adds) and ends where
    the next turn's prefix begins, so it covers the content plus the template's end-of-turn text.
    """
    text = _render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1])
        if not (text.startswith(prefix) and text.startswith(upto) and len(upto) > len(prefix)):
            raise DomainRagError(
                "the model's chat template does not render conversations as a growing prefix, so "
                "assistant tokens cannot be located",
                hint="use a model with a standard chat template (ChatML, Llama 3, Qwen ...)",
            )
        spans.append((len(prefix), len(upto)))
    return text, spans


def encode_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], max_seq_len: int) -> EncodedChat | None:
    """Token ids and labels for one conversation; None when truncation leaves no assistant token.

    Labelled per assistant turn: the content tokens plus the first special token after the
    content (the end-of-turn marker, e.g. ``<|im_end|>``); trailing template text such as the
    newline after it stays masked, so the model learns to stop exactly at end-of-turn.
    """
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    special = set(tokenizer.all_special_ids) | {
        i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)
    }
    labels = [IGNORE_INDEX] * len(ids)
    assistant = [m for m in messages if m["role"] == "assistant"]
    for (start, end), turn in zip(spans, assistant, strict=True):
        found = text.find(turn["content"], start, end)
        content_end = found + len(turn["content"]) if found >= 0 else end
        closed = found < 0  # content not found verbatim: label the whole turn
        for t, (s, _e) in enumerate(offsets):
            if s < start or s >= end:
                continue
            if s < content_end:
                labels[t] = ids[t]
            elif not closed and ids[t] in special:
                labels[t] = ids[t]
                closed = True
    ids, labels = ids[:max_seq_len], labels[:max_seq_len]
    if all(label == IGNORE_INDEX for label in labels[1:]):
        return None
    return EncodedChat(ids, labels)


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class _Setup:
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


def split_train_eval(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic split of ``range(n)`` into (train, eval) indices; eval is empty for tiny sets."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = round(n * eval_fraction) if n >= 2 else 0
    n_eval = min(max(n_eval, 1 if eval_fraction > 0 and n >= 2 else 0), n - 1) if n >= 2 else 0
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def micro_batch_indices(n_train: int, batch_size: int, seed: int, micro_step: int) -> list[int]:
    """Example indices of global micro-batch ``micro_step``: a pure function, so resume is exact.

    Each epoch is a fresh permutation seeded by ``(seed, epoch)``; the last batch may be short.
    """
    per_epoch = math.ceil(n_train / batch_size)
    epoch, pos = divmod(micro_step, per_epoch)
    order = list(range(n_train))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[pos * batch_size : (pos + 1) * batch_size]


def _collate(batch: Sequence[EncodedChat], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def pack_rows(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """Group examples (by index) into rows of at most ``row_len`` tokens: first-fit decreasing.

    Deterministic (ties keep input order). An example longer than ``row_len`` gets a row of its own.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        slot = next((r for r, free in enumerate(room) if lengths[i] <= free), None)
        if slot is None:
            rows.append([i])
            room.append(row_len - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def _collate_packed(
    batch: Sequence[EncodedChat], pad_id: int, row_len: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Packing: the micro-batch's conversations concatenated into rows of at most ``row_len`` tokens.

    Each row comes from transformers' :class:`DataCollatorWithFlattening`: position ids restart at
    every conversation and the label of each one's first token is masked, so no conversation
    learns to predict the next one's start. With ``position_ids`` and no ``attention_mask`` the
    model builds a block-diagonal causal mask (transformers' packed-sequence detection), so no
    token attends across a boundary: same labels and same loss as :func:`_collate`. Rows are
    capped at ``row_len`` because on CPU (sdpa/eager, no varlen kernel) attention is quadratic in
    the row length; the short rows' tail padding is a separate position-id segment with no labels.
    """
    from transformers import DataCollatorWithFlattening

    flatten = DataCollatorWithFlattening(return_tensors="pt")
    rows = [
        flatten([{"input_ids": batch[i].input_ids, "labels": batch[i].labels} for i in row])
        for row in pack_rows([len(e.input_ids) for e in batch], row_len)
    ]
    width = max(r["input_ids"].shape[1] for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        n = r["input_ids"].shape[1]
        ids[k, :n], labels[k, :n], positions[k, :n] = r["input_ids"][0], r["labels"][0], r["position_ids"][0]
        positions[k, n:] = torch.arange(width - n)
    real = torch.tensor(sum(len(e.input_ids) for e in batch))
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "position_ids": positions.to(device),
        "n_tokens": real,
    }


def _loss_sum(model: Any, batch: dict[str, torch.Tensor], precision: str = "fp32") -> tuple[torch.Tensor, int]:
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
        loss, n = _loss_sum(model, _collate(examples[i : i + batch_size], pad_id, device), precision)
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def _dataset_fingerprint(args: SFTArgs, train: Sequence[EncodedChat]) -> str:
    """Hash of what determines the data order; resuming with a different one would be wrong."""
    h = hashlib.sha256()
    for e in train:
        h.update(json.dumps(e.input_ids).encode())
    h.update(json.dumps([args.seed, args.batch_size, args.grad_accum]).encode())
    return h.hexdigest()[:16]


def setup(args: SFTArgs, reporter: Reporter) -> _Setup:
    """Tokenize and split the data, load the base model and wrap it with LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise DomainRagError(f"base model '{args.base_model}' has no chat template", hint="use an instruct/chat model")
    conversations = read_chat_dataset(Path(args.dataset))
    encoded = [encode_chat(tokenizer, m, args.max_seq_len) for m in conversations]
    kept = [e for e in encoded if e is not None]
    dropped = len(encoded) - len(kept)
    if dropped:
        reporter.log(f"dropped {dropped} conversations with no assistant token within {args.max_seq_len} tokens")
    if not kept:
        raise DomainRagError("no conversation has an assistant turn within max_seq_len", hint="raise max_seq_len")
    train_idx, eval_idx = split_train_eval(len(kept), args.eval_fraction, args.seed)
    train, evals = [kept[i] for i in train_idx], [kept[i] for i in eval_idx]
    if args.early_stopping_patience is not None and not evals:
        reporter.log(f"early stopping is off: {len(kept)} conversation(s) leave no held-out split")

    per_epoch = math.ceil(len(train) / args.batch_size)
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * per_epoch / args.grad_accum))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(args.base_model, dtype=torch.float32)
    model.config.use_cache = False
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    # LoRA on the top layers only: backpropagation then stops at the lowest adapted layer, which
    # is what makes CPU fine-tuning affordable (about 1.8x faster with a third of the layers).
    top = min(args.lora_layers, n_layers) if args.lora_layers and n_layers else None
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=list(args.target_modules),
        layers_to_transform=list(range(n_layers - top, n_layers)) if top else None,
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise DomainRagError(
            f"LoRA target modules {list(args.target_modules)} do not fit this model ({exc})",
            hint=f"choose among its linear layers: {', '.join(linear)}",
        ) from None
    model.to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if args.packing:
        _check_packing_isolates(model, pad_id, device)
    trainable, total = model.get_nb_trainable_parameters()
    reporter.log(
        f"SFT setup: {len(train)} train / {len(evals)} eval conversations, {total_steps} steps, "
        f"LoRA r={args.lora_r} on {','.join(args.target_modules)}: {trainable:,} of {total:,} "
        f"parameters trainable, device {device}, precision {resolve_precision(args.precision)}"
    )
    return _Setup(
        tokenizer=tokenizer,
        model=model,
        train=train,
        eval=evals,
        pad_id=pad_id,
        device=device,
        total_steps=total_steps,
        fingerprint=_dataset_fingerprint(args, train),
        dropped=dropped,
    )


@torch.no_grad()
def _check_packing_isolates(model: Any, pad_id: int, device: torch.device) -> None:
    """Refuse packing for a model whose attention lets packed conversations see each other.

    Packing relies on transformers deriving a block-diagonal mask from restarting position ids;
    an architecture that ignores them would train silently on cross-conversation attention.
    Two tiny sequences, packed vs alone: milliseconds, once per run.
    """
    first, second = [3, 5, 7, 11, 13], [17, 19, 23, 29]
    chats = [EncodedChat(first, [IGNORE_INDEX] * 5), EncodedChat(second, [IGNORE_INDEX] * 4)]
    packed = _collate_packed(chats, pad_id, 64, device)
    was_training = model.training
    model.eval()
    together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    alone = model(input_ids=torch.tensor([second], device=device), use_cache=False).logits
    model.train(was_training)
    if not torch.allclose(together[0, len(first) :], alone[0], rtol=1e-3, atol=1e-3):
        raise DomainRagError(
            f"packing is not supported for {type(model).__name__}: its attention crosses packed conversations",
            hint="set packing=false",
        )


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [
        (int(p.name[len(_CKPT_PREFIX) :]), p)
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith(_CKPT_PREFIX) and (p / _STATE_FILE).exists()
    ]
    return sorted(found)


def _save_checkpoint(folder: Path, s: _Setup, state: dict[str, Any], keep: int) -> Path:
    """Write adapter + training state atomically (temp folder, then rename); prune old ones."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{_CKPT_PREFIX}{state['step']:07d}"
    tmp = folder / f".tmp-{target.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    s.model.save_pretrained(tmp)
    torch.save(state, tmp / _STATE_FILE)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for _step, old in _checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(args: SFTArgs, s: _Setup, reporter: Reporter) -> dict[str, Any]:
    """Train the LoRA adapter; checkpoint every ``save_every`` steps; resume when asked."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import get_cosine_schedule_with_warmup

    model = s.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = round(args.warmup_ratio * s.total_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, s.total_steps)

    step, resumed_from = 0, None
    stats: dict[str, Any] = {"train_loss_first": math.nan, "eval_loss_before": None}
    if args.resume and args.checkpoint_dir is not None:
        found = _checkpoints(Path(args.checkpoint_dir))
        if found:
            ckpt_step, ckpt = found[-1]
            state = torch.load(ckpt / _STATE_FILE, weights_only=True)
            if state["fingerprint"] != s.fingerprint:
                raise DomainRagError(
                    f"checkpoint {ckpt} was made with different data, seed or batch settings",
                    hint="resume with the original dataset and arguments, or start without --resume",
                )
            set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"])
            stats = state["stats"]
            step = resumed_from = ckpt_step
            reporter.log(f"resuming from {ckpt} at step {step + 1}/{s.total_steps}")
        else:
            reporter.log(f"no checkpoint in {args.checkpoint_dir}; starting from scratch")

    if resumed_from is None:
        stats["eval_loss_before"] = evaluate_loss(model, s.eval, args.batch_size, s.pad_id, args.precision)
        if stats["eval_loss_before"] is not None:
            reporter.log(f"eval loss before training: {stats['eval_loss_before']:.4f}")
            reporter.metric(0, eval_loss=stats["eval_loss_before"])

    model.train()
    if args.packing:
        collate = lambda b: _collate_packed(b, s.pad_id, args.max_seq_len, s.device)  # noqa: E731
    else:
        collate = lambda b: _collate(b, s.pad_id, s.device)  # noqa: E731
    tokens = padded = labelled = 0
    t0 = time.perf_counter()
    last_loss = stats.get("train_loss_last", math.nan)
    while step < s.total_steps and stats.get("stop_reason") is None:
        micro = [
            collate([s.train[i] for i in micro_batch_indices(len(s.train), args.batch_size, args.seed, m)])
            for m in range(step * args.grad_accum, (step + 1) * args.grad_accum)
        ]
        n_labels = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)
        step_loss = 0.0
        for batch in micro:
            loss_sum, _n = _loss_sum(model, batch, args.precision)
            (loss_sum / max(n_labels, 1)).backward()
            step_loss += loss_sum.item()
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
                "rng": _rng_state(),
                "fingerprint": s.fingerprint,
                "stats": stats,
            }
            _save_checkpoint(Path(args.checkpoint_dir), s, state, args.keep_checkpoints)
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
            from peft import get_peft_model_state_dict

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
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, stats["best_adapter"])
    stats["restored_best_step"] = stats["best_step"]
    reporter.log(f"restored the adapter of step {stats['best_step']} (held-out loss {best:.4f})")
    reporter.metric(step, eval_loss=best)
    return float(best)


def _jsonable(args: SFTArgs) -> dict[str, Any]:
    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(args).items()
    }


def save(args: SFTArgs, s: _Setup, metrics: dict[str, Any], reporter: Reporter) -> tuple[Path, Path | None]:
    """Save the adapter (+ tokenizer + metadata) and, if asked, the merged full model."""
    out = Path(args.output_dir)
    adapter_dir = out / ADAPTER_SUBDIR
    s.model.save_pretrained(adapter_dir)
    s.tokenizer.save_pretrained(adapter_dir)
    meta = {"kind": "sft-lora", "args": _jsonable(args), "metrics": metrics}
    (adapter_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    reporter.log(f"adapter saved to {adapter_dir}")
    merged_dir = None
    if args.merge:
        merged_dir = out / MERGED_SUBDIR
        merged = s.model.merge_and_unload()
        merged.config.use_cache = True
        merged.save_pretrained(merged_dir, safe_serialization=True)
        s.tokenizer.save_pretrained(merged_dir)
        (merged_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        reporter.log(f"merged model saved to {merged_dir}")
    return adapter_dir, merged_dir


def run_sft(args: SFTArgs, reporter: Reporter) -> SFTResult:
    """Fine-tune ``args.base_model`` with LoRA on ``args.dataset``: setup → fit → save."""
    t0 = time.perf_counter()
    s = setup(args, reporter)
    metrics = fit(args, s, reporter)
    metrics.update(n_train=len(s.train), n_eval=len(s.eval), dropped=s.dropped)
    adapter_dir, merged_dir = save(args, s, metrics, reporter)
    return SFTResult(
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        train_loss_first=metrics["train_loss_first"],
        train_loss_last=metrics["train_loss_last"],
        eval_loss_before=metrics["eval_loss_before"],
        eval_loss_after=metrics["eval_loss_after"],
        steps=metrics["steps"],
        tokens_per_s=metrics["tokens_per_s"],
        seconds=time.perf_counter() - t0,
        n_train=len(s.train),
        n_eval=len(s.eval),
        resumed_from=metrics["resumed_from"],
    )
