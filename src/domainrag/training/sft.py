"""Supervised fine-tuning of a chat LLM on its own chat template: LoRA, QLoRA or full.

Flow: :func:`run_sft` = setup (tokenize and split the conversations, load the base model, describe
its LoRA adapters) → fit (TRL's SFTTrainer, :mod:`domainrag.training.sft_fit`) → save (adapter or
model, optional merged model, ``domainrag_sft.json``). The assistant-only labels are in
:mod:`domainrag.training.sft_data`, the resume check in :mod:`domainrag.training.sft_checkpoints`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from domainrag.data.formats import read_chat_dataset
from domainrag.errors import DomainRagError
from domainrag.training.hyperparameters import SFTArgs
from domainrag.training.precision import resolve_precision
from domainrag.training.reporting import Reporter
from domainrag.training.sft_data import dataset_fingerprint, encode_chat, split_train_eval
from domainrag.training.sft_fit import SFTSetup, fit

__all__ = ["SFTArgs", "SFTResult", "run_sft", "save", "setup"]

ADAPTER_SUBDIR = "adapter"
MODEL_SUBDIR = "model"
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


def load_base_model(args: SFTArgs) -> Any:
    """The base model in the dtype (and, for QLoRA, the 4-bit quantization) the run asks for."""
    cuda = torch.cuda.is_available()
    bf16 = resolve_precision(args.precision) == "bf16"
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if args.finetuning == "qlora":
        if not cuda:
            raise DomainRagError("finetuning=qlora needs a CUDA GPU (bitsandbytes 4-bit)", hint="use finetuning=lora")
        try:  # optional GPU dependency: imported only when QLoRA is asked for
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise DomainRagError("finetuning=qlora needs the bitsandbytes package",
                                 hint="pip install bitsandbytes, or use finetuning=lora") from None
        compute = torch.bfloat16 if bf16 else torch.float16
        kwargs = {"dtype": compute, "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)}
    elif args.finetuning == "lora" and cuda and bf16:
        kwargs["dtype"] = torch.bfloat16  # frozen base in bf16; peft keeps the adapter weights in fp32
    model = AutoModelForCausalLM.from_pretrained(args.base_model, **kwargs)
    model.config.use_cache = False
    return model


def lora_config(args: SFTArgs, model: Any) -> LoraConfig | None:
    """The peft LoRA config (None for full fine-tuning)."""
    if args.finetuning == "full":
        return None
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    # LoRA on the top layers only: backpropagation then stops at the lowest adapted layer, which
    # is what makes CPU fine-tuning affordable.
    top = min(args.lora_layers, n_layers) if args.lora_layers and n_layers else None
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=list(args.target_modules),
        layers_to_transform=list(range(n_layers - top, n_layers)) if top else None,
    )


def setup(args: SFTArgs, reporter: Reporter) -> SFTSetup:
    """Tokenize and split the data, load the base model and describe its LoRA adapters."""
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
    model = load_base_model(args)
    if args.packing:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        check_packing_isolates(model, pad_id)
    peft_config = lora_config(args, model)
    total = sum(p.numel() for p in model.parameters())
    how = "full fine-tuning" if peft_config is None else (
        f"{args.finetuning} r={args.lora_r} on {','.join(args.target_modules)}"
        + (f" (top {args.lora_layers} layers)" if args.lora_layers else ""))
    reporter.log(
        f"SFT setup: {len(train)} train / {len(evals)} eval conversations, {how}, {total:,} base parameters, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, precision {resolve_precision(args.precision)}"
    )
    return SFTSetup(
        tokenizer=tokenizer,
        model=model,
        train=train,
        eval=evals,
        peft_config=peft_config,
        fingerprint=dataset_fingerprint(args, train),
        dropped=dropped,
    )


@torch.no_grad()
def check_packing_isolates(model: Any, pad_id: int) -> None:
    """Refuse packing for a model whose attention lets packed conversations see each other.

    Packing (TRL's padding-free batches) relies on transformers deriving a block-diagonal mask from
    restarting position ids; neither library checks that the architecture does, and one that ignores
    them would train silently on cross-conversation attention. Two tiny sequences, packed vs alone,
    once per run, through TRL's own collator.
    """
    first, second = [3, 5, 7, 11, 13], [17, 19, 23, 29]
    packed = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)(
        [{"input_ids": first}, {"input_ids": second}]
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    together = model(
        input_ids=packed["input_ids"].to(device), position_ids=packed["position_ids"].to(device), use_cache=False
    ).logits
    alone = model(input_ids=torch.tensor([second], device=device), use_cache=False).logits
    model.train(was_training)
    if not torch.allclose(together[0, len(first) :].float(), alone[0].float(), rtol=1e-3, atol=1e-3):
        raise DomainRagError(
            f"packing is not supported for {type(model).__name__}: its attention crosses packed conversations",
            hint="set packing=false",
        )


def save(args: SFTArgs, s: SFTSetup, trainer: Any, metrics: dict[str, Any], reporter: Reporter
         ) -> tuple[Path, Path | None]:
    """Save the adapter (or, for full fine-tuning, the model) + tokenizer + metadata; merge if asked.

    Every process calls the Trainer's ``save_model`` (it gathers ZeRO-3 / FSDP shards; only the main
    process writes); the metadata and the merged model are written by the main process.
    """
    out = Path(args.output_dir)
    full = args.finetuning == "full"
    adapter_dir = out / (MODEL_SUBDIR if full else ADAPTER_SUBDIR)
    merged_dir = out / MERGED_SUBDIR if args.merge and not full else None
    trainer.save_model(str(adapter_dir))
    if not trainer.accelerator.is_main_process:
        return adapter_dir, merged_dir
    (adapter_dir / "training_args.bin").unlink(missing_ok=True)  # the Trainer's pickle: not part of the artifact
    s.tokenizer.save_pretrained(adapter_dir)
    meta = {"kind": f"sft-{args.finetuning}", "args": args.model_dump(mode="json"), "metrics": metrics}
    (adapter_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    reporter.log(f"{'model' if full else 'adapter'} saved to {adapter_dir}")
    if merged_dir is not None:  # from the main process's full copy: not under ZeRO-3 / FSDP sharding
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.config.use_cache = True
        merged.save_pretrained(merged_dir, safe_serialization=True)
        s.tokenizer.save_pretrained(merged_dir)
        (merged_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        reporter.log(f"merged model saved to {merged_dir}")
    return adapter_dir, merged_dir


def run_sft(args: SFTArgs, reporter: Reporter) -> SFTResult:
    """Fine-tune ``args.base_model`` on ``args.dataset``: setup → fit (SFTTrainer) → save."""
    t0 = time.perf_counter()
    s = setup(args, reporter)
    metrics, trainer = fit(args, s, reporter)
    metrics.update(n_train=len(s.train), n_eval=len(s.eval), dropped=s.dropped)
    adapter_dir, merged_dir = save(args, s, trainer, metrics, reporter)
    trainer.accelerator.wait_for_everyone()
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
