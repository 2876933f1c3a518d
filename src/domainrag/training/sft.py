"""LoRA supervised fine-tuning of a chat LLM on its own chat template.

Flow (litgpt style): :func:`run_sft` = setup (tokenize and split the conversations, wrap the base
model with peft) → fit (:mod:`domainrag.training.sft_fit`) → save (adapter, optional merged model,
``domainrag_sft.json``). The data steps (assistant-only labels, order, padding and packing) are in
:mod:`domainrag.training.sft_data`, the checkpoints in :mod:`domainrag.training.sft_checkpoints`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from domainrag.data.formats import read_chat_dataset
from domainrag.errors import DomainRagError
from domainrag.training.hyperparameters import SFTArgs
from domainrag.training.precision import resolve_precision
from domainrag.training.reporting import Reporter
from domainrag.training.sft_data import (
    IGNORE_INDEX,
    EncodedChat,
    collate_packed,
    dataset_fingerprint,
    encode_chat,
    split_train_eval,
)
from domainrag.training.sft_fit import SFTSetup, fit

__all__ = ["SFTArgs", "SFTResult", "run_sft", "save", "setup"]

ADAPTER_SUBDIR = "adapter"
MERGED_SUBDIR = "merged"
METADATA_FILE = "domainrag_sft.json"


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


def setup(args: SFTArgs, reporter: Reporter) -> SFTSetup:
    """Tokenize and split the data, load the base model and wrap it with LoRA."""
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
    # is what makes CPU fine-tuning affordable.
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
        check_packing_isolates(model, pad_id, device)
    trainable, total = model.get_nb_trainable_parameters()
    reporter.log(
        f"SFT setup: {len(train)} train / {len(evals)} eval conversations, {total_steps} steps, "
        f"LoRA r={args.lora_r} on {','.join(args.target_modules)}: {trainable:,} of {total:,} "
        f"parameters trainable, device {device}, precision {resolve_precision(args.precision)}"
    )
    return SFTSetup(
        tokenizer=tokenizer,
        model=model,
        train=train,
        eval=evals,
        pad_id=pad_id,
        device=device,
        total_steps=total_steps,
        fingerprint=dataset_fingerprint(args, train),
        dropped=dropped,
    )


@torch.no_grad()
def check_packing_isolates(model: Any, pad_id: int, device: torch.device) -> None:
    """Refuse packing for a model whose attention lets packed conversations see each other.

    Packing relies on transformers deriving a block-diagonal mask from restarting position ids;
    an architecture that ignores them would train silently on cross-conversation attention.
    Two tiny sequences, packed vs alone, once per run.
    """
    first, second = [3, 5, 7, 11, 13], [17, 19, 23, 29]
    chats = [EncodedChat(first, [IGNORE_INDEX] * 5), EncodedChat(second, [IGNORE_INDEX] * 4)]
    packed = collate_packed(chats, pad_id, 64, device)
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


def save(args: SFTArgs, s: SFTSetup, metrics: dict[str, Any], reporter: Reporter) -> tuple[Path, Path | None]:
    """Save the adapter (+ tokenizer + metadata) and, if asked, the merged full model."""
    out = Path(args.output_dir)
    adapter_dir = out / ADAPTER_SUBDIR
    s.model.save_pretrained(adapter_dir)
    s.tokenizer.save_pretrained(adapter_dir)
    meta = {"kind": "sft-lora", "args": args.model_dump(mode="json"), "metrics": metrics}
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
