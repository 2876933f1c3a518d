"""In-process transformers backend: a causal LM (optionally with a LoRA adapter) streamed on CPU or GPU.

Every request of a model goes through one :class:`~.batching.BatchRunner`: concurrent requests share each
decode step (continuous batching), and each one's text is decoded as its tokens arrive. ``transformers`` and
``peft`` are imported where a model is loaded, not at module import: the CLI imports this package on paths
that never load a model.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from domainrag import hardware
from domainrag.serving.attention import register
from domainrag.serving.backends.batching import BatchRunner
from domainrag.serving.backends.config import DEFAULT_MAX_BATCH, DEFAULT_PREFILL_BUDGET
from domainrag.serving.generator import GenerationConfig
from domainrag.serving.metrics import record_batch_size
from domainrag.serving.stop_sequences import StopAt


class TransformersGenerator:
    """A causal LM (optionally with a LoRA adapter merged in) that streams chat completions."""

    def __init__(self, base_path: str, adapter_path: str | None = None, name: str | None = None,
                 dtype: str = "auto", max_batch: int = DEFAULT_MAX_BATCH,
                 prefill_budget: int = DEFAULT_PREFILL_BUDGET) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name or base_path
        self.tokenizer = AutoTokenizer.from_pretrained(adapter_path or base_path)
        # CPU prefill of long prompts uses the blocked attention; every other case inside it is plain SDPA
        # (see domainrag.serving.attention).
        attn = register() if not torch.cuda.is_available() else "sdpa"
        self.dtype = resolve_dtype(dtype)
        # An adapter is merged into fp32 weights, then the sum is cast: no bf16 rounding of the LoRA delta itself.
        load_dtype = "float32" if adapter_path else self.dtype
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, load_dtype),
                                                     attn_implementation=attn)
        if adapter_path:
            from peft import PeftModel

            # Merged once at load: generation then runs at base-model speed.
            model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload().to(getattr(torch, self.dtype))
        model.eval()
        self.model = model
        self._lock = threading.Lock()  # held around each forward pass (other users of the model take it too)
        eos = model.generation_config.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.batch = BatchRunner(model, eos_ids, self._lock, max_batch=max_batch, prefill_budget=prefill_budget)
        self.batch.on_step = lambda size: record_batch_size(self.name, size)  # /metrics' batch-size histogram

    @property
    def context_window(self) -> int | None:
        """Positions the model was trained for (prompt + completion)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> torch.Tensor:
        ids = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return ids["input_ids"]

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
    ) -> StopAt:
        """Yield text pieces as they are generated, up to the first of ``config.stop``.

        The request joins the model's running batch. Setting ``cancel`` (or closing the iterator) takes it
        out of the batch at the next step, so an abandoned request (client gone) frees its place instead of
        generating to ``max_new_tokens``; meeting a stop sequence closes it the same way.
        """
        cfg = config or GenerationConfig()
        return StopAt(self._pieces(messages, cfg, cancel), cfg.stop)

    def _pieces(
        self, messages: Sequence[dict[str, str]], cfg: GenerationConfig, cancel: threading.Event | None
    ) -> Iterator[str]:
        tokens = self.batch.submit(self.prompt_ids(messages)[0].tolist(), cfg, cancel or threading.Event())
        try:
            yield from _decoded(self.tokenizer, tokens)
        finally:
            tokens.close()  # a consumer that stopped early (or a stop sequence) cancels the request

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        return "".join(self.stream(messages, config))


def _decoded(tokenizer: Any, tokens: Iterator[int]) -> Iterator[str]:
    """Text pieces of a token stream, each as soon as it is whole (no half of a multi-byte character).

    The same rule as transformers' ``TextIteratorStreamer`` (decode the tokens since the last full piece,
    hold back text ending in the replacement character), without its thread and queue.
    """
    pending: list[int] = []
    sent = 0
    for token in tokens:
        pending.append(token)
        text = tokenizer.decode(pending, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            continue
        if text.endswith("\n"):
            piece, pending, sent = text[sent:], [], 0
        else:
            piece, sent = text[sent:], len(text)
        if piece:
            yield piece
    if pending and (tail := tokenizer.decode(pending, skip_special_tokens=True)[sent:]):
        yield tail


def resolve_dtype(dtype: str) -> str:
    """``auto`` → ``bfloat16`` on CPUs that multiply bf16 natively (faster there), else ``float32``."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if hardware.native_bf16() else "float32"


@functools.lru_cache(maxsize=3)
def load_generator(base_path: str, adapter_path: str | None = None, name: str | None = None,
                   dtype: str = "auto", max_batch: int = DEFAULT_MAX_BATCH,
                   prefill_budget: int = DEFAULT_PREFILL_BUDGET) -> TransformersGenerator:
    """Process-wide cache of loaded generators (loading costs seconds)."""
    return TransformersGenerator(base_path, adapter_path, name, dtype, max_batch, prefill_budget)
