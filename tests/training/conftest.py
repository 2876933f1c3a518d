"""Fixtures shared by the training tests: one torch thread, the real (offline) base models, a tiny LLM."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: far faster than two on a busy 2-core CI box, and deterministic.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embedder() -> str:
    """Local folder of the all-MiniLM-L6-v2 sentence-transformers model."""
    from domainrag.zoo import resolve_embedder

    return resolve_embedder("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def smollm_path() -> str:
    from domainrag.zoo import resolve_llm

    return resolve_llm("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def tokenizer(smollm_path: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_path)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:  # type: ignore[no-untyped-def]
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template: fast, real architecture."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llm")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def varied_chats() -> Callable[..., list[list[dict[str, str]]]]:
    """A function making n chats of clearly different lengths, so padding would be substantial."""

    def make(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
        rng = random.Random(seed)
        chats = []
        for i in range(n):
            filler = " ".join(f"w{rng.randint(0, 99)}" for _ in range(rng.randint(1, 30)))
            chats.append(
                [
                    {"role": "user", "content": f"Item {i}: {filler}?"},
                    {"role": "assistant", "content": f"Code ZX-{i * 7 % 50}."},
                ]
            )
        return chats

    return make
