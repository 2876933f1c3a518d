"""In-process transformers backend: a causal LM (optionally with a LoRA adapter) streamed on CPU or GPU.

Streaming uses transformers' ``TextIteratorStreamer`` with ``generate`` in a worker thread, so tokens
reach the caller as soon as they are decoded. ``transformers`` and ``peft`` are imported where a model
is loaded, not at module import: the CLI imports this package on paths that never load a model.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence

import torch

from domainrag import hardware
from domainrag.serving.attention import register
from domainrag.serving.backends.sampling import sampling_kwargs
from domainrag.serving.generator import GenerationConfig
from domainrag.serving.stop_sequences import StopAt


class TransformersGenerator:
    """A causal LM (optionally with a LoRA adapter merged in) that streams chat completions."""

    def __init__(self, base_path: str, adapter_path: str | None = None, name: str | None = None,
                 dtype: str = "auto") -> None:
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
        self._lock = threading.Lock()  # one generate() at a time per model

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

        Setting ``cancel`` (or closing the iterator) stops ``generate`` at the next token, so an
        abandoned request (client gone) frees the model instead of generating to ``max_new_tokens``;
        meeting a stop sequence closes it the same way.
        """
        cfg = config or GenerationConfig()
        return StopAt(self._pieces(messages, cfg, cancel), cfg.stop)

    def _pieces(
        self, messages: Sequence[dict[str, str]], cfg: GenerationConfig, cancel: threading.Event | None
    ) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

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
            **sampling_kwargs(cfg, input_ids.shape[1]),
        )
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
    """``auto`` → ``bfloat16`` on CPUs that multiply bf16 natively (faster there), else ``float32``."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if hardware.native_bf16() else "float32"


@functools.lru_cache(maxsize=3)
def load_generator(base_path: str, adapter_path: str | None = None, name: str | None = None,
                   dtype: str = "auto") -> TransformersGenerator:
    """Process-wide cache of loaded generators (loading costs seconds)."""
    return TransformersGenerator(base_path, adapter_path, name, dtype)
