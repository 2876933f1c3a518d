"""llama.cpp backend: a GGUF model run in-process by the optional ``llama-cpp-python`` package.

Install with ``pip install 'domainrag[llamacpp]'``; without it every entry point raises one clear error
with that hint. Which GGUF file runs (a path, a packaged base model, a converted copy) is decided by
:mod:`.gguf`.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from domainrag.errors import DomainRagError
from domainrag.serving.generator import GenerationConfig
from domainrag.serving.stop_sequences import StopAt

LLAMACPP_INSTALL_HINT = "pip install 'domainrag[llamacpp]'  (compiles llama.cpp from source)"


def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or a clear error with the install hint."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise DomainRagError("the llamacpp backend needs llama-cpp-python, which is not installed",
                             hint=LLAMACPP_INSTALL_HINT) from exc


class LlamaCppGenerator:
    """A GGUF model run by llama.cpp, streamed from a worker thread like the transformers backend."""

    reports_usage = True  # counted with llama.cpp's own tokenizer and the GGUF's chat template

    def __init__(self, gguf_path: str, *, n_ctx: int = 2048, n_threads: int | None = None,
                 name: str | None = None, flash_attn: bool = True) -> None:
        llama_cpp = import_llama_cpp()
        self.name = name or Path(gguf_path).stem
        try:
            self.llm = llama_cpp.Llama(model_path=gguf_path, n_ctx=n_ctx, n_threads=n_threads,
                                       flash_attn=flash_attn, verbose=False)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file: ...", or a missing path
            unreadable = "Failed to load model" in str(exc)
            raise DomainRagError(f"llama.cpp could not load {gguf_path}: {exc}",
                                 hint="the file is truncated or not a model llama.cpp supports; export or download "
                                      "it again, then `domainrag model deploy` it" if unreadable else
                                      "check the endpoint's gguf path and settings (`domainrag model show`)") from exc
        self._lock = threading.Lock()  # a llama.cpp context serves one generation at a time
        self._closed = threading.Event()
        # Freed before interpreter teardown (llama-cpp-python's __del__ fails once modules are gone), and only
        # once no worker thread is inside the context: freeing it under a running generation crashes the process.
        atexit.register(self.close)

    def close(self, timeout: float = 30.0) -> None:
        """Stop new generations, wait for the running one to leave the context, then free the model."""
        if self._closed.is_set():
            return
        self._closed.set()
        acquired = self._lock.acquire(timeout=timeout)
        try:
            if acquired:
                self.llm.close()
        finally:
            if acquired:
                self._lock.release()

    @functools.cached_property
    def _chat_formatter(self) -> Any:
        """The GGUF's own chat template, compiled once (``None`` when the file has none)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        vocab = self.llm._model
        return Jinja2ChatFormatter(template, eos_token=vocab.token_get_text(self.llm.token_eos()),
                                   bos_token=vocab.token_get_text(self.llm.token_bos()))

    @property
    def context_window(self) -> int:
        """Tokens of the llama.cpp context (prompt + completion)."""
        return int(self.llm.n_ctx())

    def chat_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The chat prompt's tokens as llama.cpp sees them (the GGUF's own chat template, generation prompt
        included); without a template in the file, the bare contents."""
        if self._chat_formatter is None:
            return [t for m in messages for t in self.llm.tokenize(m["content"].encode(), add_bos=False)]
        prompt = self._chat_formatter(messages=list(messages)).prompt
        return list(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))

    def eval_tokens(self, tokens: Sequence[int]) -> Any:
        """Make ``tokens`` the context's whole content and return the logits after the last one (a numpy
        copy). The prefix the context already holds is kept, as llama.cpp's own generate does, so scoring a
        prompt and then continuations of it (``prompt + [t1]``, ``prompt + [t1, t2]``, another ``prompt +
        [u1]``) evaluates each token once. Callers sharing the generator hold ``_lock`` around their calls."""
        import numpy as np

        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        keep = 0
        while keep < min(len(cached), len(tokens) - 1) and cached[keep] == tokens[keep]:
            keep += 1
        llm.n_tokens = keep  # eval() drops the KV cache past n_tokens before it decodes
        llm.eval(list(tokens[keep:]))
        if hasattr(llm, "_requires_eval"):  # the next generate must not take these logits for its prompt's
            llm._requires_eval = True
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        """Tokens of the chat prompt as llama.cpp will see it (the GGUF's own chat template)."""
        return len(self.chat_prompt_tokens(messages))

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
        usage: dict[str, int] | None = None,
    ) -> StopAt:
        """Yield text pieces up to the first of ``config.stop``; ``cancel`` (or closing the iterator, or meeting a
        stop sequence) stops at the next token; ``usage`` receives the token counts of the text generated."""
        cfg = config or GenerationConfig()
        return StopAt(self._pieces(messages, cfg, cancel, usage), cfg.stop)

    def _pieces(
        self, messages: Sequence[dict[str, str]], cfg: GenerationConfig, cancel: threading.Event | None,
        usage: dict[str, int] | None,
    ) -> Iterator[str]:
        stop = cancel or threading.Event()
        pieces: queue.Queue[Any] = queue.Queue()
        end = object()

        def _run() -> None:
            try:
                with self._lock:
                    if stop.is_set() or self._closed.is_set():
                        return
                    chunks = self.llm.create_chat_completion(
                        messages=list(messages), stream=True, max_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, top_p=cfg.top_p, repeat_penalty=cfg.repetition_penalty,
                        seed=cfg.seed, presence_penalty=cfg.presence_penalty, frequency_penalty=cfg.frequency_penalty,
                    )  # stop sequences are cut by StopAt, the same for every backend
                    try:
                        for chunk in chunks:
                            if stop.is_set() or self._closed.is_set():
                                break
                            for choice in chunk.get("choices") or []:
                                if piece := (choice.get("delta") or {}).get("content"):
                                    pieces.put(piece)
                    finally:
                        chunks.close()  # llama.cpp's stream ends inside the lock, not later in another thread
            except BaseException as exc:  # surfaced to the caller
                pieces.put(exc)
            finally:
                pieces.put(end)

        threading.Thread(target=_run, daemon=True).start()
        finished, text = False, ""
        try:
            while (item := pieces.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                text += item
                yield item
            finished = True
        finally:
            if not finished:
                stop.set()
            if usage is not None:
                usage["prompt_tokens"] = self.count_prompt_tokens(messages)
                usage["completion_tokens"] = len(self.llm.tokenize(text.encode(), add_bos=False)) if text else 0

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        return "".join(self.stream(messages, config))


@functools.lru_cache(maxsize=2)
def load_llamacpp(gguf_path: str, n_ctx: int = 2048, n_threads: int | None = None,
                  name: str | None = None, flash_attn: bool = True) -> LlamaCppGenerator:
    """Process-wide cache of loaded llama.cpp models."""
    return LlamaCppGenerator(gguf_path, n_ctx=n_ctx, n_threads=n_threads, name=name, flash_attn=flash_attn)


