"""Text generation behind one interface (:class:`Generator`); in-process transformers on CPU by default.

Streaming uses transformers' ``TextIteratorStreamer`` with ``generate`` in a worker thread, so
tokens reach the caller as soon as they are decoded. Other backends (any OpenAI-compatible server,
llama.cpp) live in :mod:`domainrag.serving.backends`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class GenerationConfig:
    temperature: float = 0.1
    max_new_tokens: int = 160
    top_p: float = 0.95
    repetition_penalty: float = 1.1


@runtime_checkable
class Generator(Protocol):
    """What apps and the API need from a generation backend."""

    name: str

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated; setting ``cancel`` (or closing the iterator) stops early."""
        ...

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        """The whole completion as one string."""
        ...


def stream_reporting_usage(
    generator: Generator,
    messages: Sequence[dict[str, str]],
    config: GenerationConfig | None,
    cancel: threading.Event | None,
    usage: dict[str, int] | None = None,
) -> Iterator[str]:
    """``generator.stream``, asking backends that count tokens server-side (``reports_usage``) to fill ``usage``.

    Local backends are counted by the caller with their tokenizer; a remote server is the only one
    that knows its own token counts, so it reports them into ``usage`` (``prompt_tokens``,
    ``completion_tokens``) when the stream ends.
    """
    if usage is not None and getattr(generator, "reports_usage", False):
        return generator.stream(messages, config, cancel, usage=usage)  # type: ignore[call-arg]
    return generator.stream(messages, config, cancel)


class TransformersGenerator:
    """A causal LM (optionally with a LoRA adapter merged in) that streams chat completions."""

    def __init__(self, base_path: str, adapter_path: str | None = None, name: str | None = None,
                 dtype: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from domainrag.serving.attention import register

        self.name = name or base_path
        self.tokenizer = AutoTokenizer.from_pretrained(adapter_path or base_path)
        # CPU prefill of long prompts uses the blocked attention (half the prompt time on 2 cores); every
        # other case inside it is plain SDPA (see domainrag.serving.attention).
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
        self._lock = threading.Lock()  # one generate() at a time per model on a 2-core box

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
    ) -> Iterator[str]:
        """Yield text pieces as they are generated.

        Setting ``cancel`` (or closing the iterator) stops ``generate`` at the next token, so an
        abandoned request (client gone) frees the model instead of generating to ``max_new_tokens``.
        """
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        cfg = config or GenerationConfig()
        stop = cancel or threading.Event()
        input_ids = self.prompt_ids(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=cfg.max_new_tokens,
            repetition_penalty=cfg.repetition_penalty,
            streamer=streamer,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            stopping_criteria=StoppingCriteriaList([_cancel_criteria(stop)]),
        )
        if cfg.temperature > 0:
            kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
        else:
            kwargs.update(do_sample=False)
        errors: list[BaseException] = []

        def _run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if stop.is_set():  # cancelled while waiting for the model
                        streamer.end()
                        return
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the caller after the stream ends
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=_run, daemon=True)
        thread.start()
        finished = False
        try:
            yield from (piece for piece in streamer if piece)
            finished = True
        finally:
            if not finished:  # consumer stopped early: let generate() stop too
                stop.set()
        thread.join()
        if errors:
            raise errors[0]

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        return "".join(self.stream(messages, config))


def _cancel_criteria(event: threading.Event) -> object:
    """A transformers ``StoppingCriteria`` that stops generation once ``event`` is set (checked per token)."""
    from transformers import StoppingCriteria

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor | None, **kwargs: object) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return _Cancel()


def resolve_dtype(dtype: str) -> str:
    """``auto`` → ``bfloat16`` on CPUs that multiply bf16 natively (where it is ~3x faster), else ``float32``."""
    from domainrag.hardware import native_bf16

    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bf16() else "float32"


@functools.lru_cache(maxsize=3)
def load_generator(base_path: str, adapter_path: str | None = None, name: str | None = None,
                   dtype: str = "auto") -> TransformersGenerator:
    """Process-wide cache of loaded generators (loading costs seconds)."""
    return TransformersGenerator(base_path, adapter_path, name, dtype)
