"""Synthetic query candidates for document passages, and their cleaning.

Two generators, both returning (query, passage) candidates: :func:`heuristic_queries` (no model)
and :func:`llm_queries` (a small instruction model). :func:`clean` then drops exact and near
duplicates and filters queries that are too short/long, copied from their passage, or whose passage
the base embedder does not retrieve (:func:`roundtrip_filter`). Orchestration, counts and the
corpus side are in :mod:`domainrag.training.synthetic`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from domainrag.data.chunking import Chunk
from domainrag.data.formats import Pair


class CleaningConfig(Protocol):
    """The thresholds :func:`clean` reads (a :class:`~domainrag.training.synthetic.SyntheticConfig`)."""

    min_query_words: int
    max_query_words: int
    near_duplicate_jaccard: float
    roundtrip_k: int


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-./]*[A-Za-z0-9]|[A-Za-z0-9]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_PREFIX = re.compile(r"^\s*(?:question|query|q)\s*\d*\s*[:.)-]\s*", re.IGNORECASE)
# Function words never make a query salient; a short list is enough (IDF does the rest).
_STOPWORD_TEXT = """a an and are as at be been but by can could did do does for from had has have how i if in into is it
    its may more most must no not of on or our should so such than that the their them then there these
    they this those to was we were what when where which while who whom why will with would you your"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
LLM_PROMPT = (
    "Passage:\n{passage}\n\nWrite one short question that this passage answers. "
    "Use the passage's own names and terms. Reply with the question only."
)


# ---------------------------------------------------------------------------------------------
# Generators


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _content(text: str) -> list[str]:
    return [w for w in (t.lower() for t in _words(text)) if w not in STOPWORDS]


def heuristic_queries(passages: Sequence[Chunk], per_passage: int = 1, n_terms: int = 6) -> list[tuple[str, str]]:
    """(query, passage) candidates without a model: the rarest terms of the passage's most salient sentences.

    Hand-written on purpose (doc2query-lite): it needs no model download, and a
    keyword query built from a chunk's rarest terms (corpus IDF) plus its title is how users search
    domain jargon — model names, error codes, people — which is exactly the vocabulary a general
    embedder has not seen. Sentences are ranked by mean IDF of their content words; each query keeps
    the ``n_terms`` rarest distinct terms of one sentence in their original order.
    """
    df: Counter[str] = Counter()
    for p in passages:
        df.update(set(_content(p.text)))
    n = len(passages)

    def idf(word: str) -> float:
        return math.log((n + 1) / (df.get(word, 0) + 0.5))

    out: list[tuple[str, str]] = []
    for p in passages:
        sentences = [s.strip() for s in _SENTENCE.split(p.text) if len(_content(s)) >= 3]
        if not sentences:
            continue
        scored = sorted(sentences, key=lambda s: -sum(map(idf, _content(s))) / len(_content(s)))
        title = [w for w in _content(p.title)][:3]
        for sentence in scored[:per_passage]:
            words: list[str] = []
            for w in (t for t in _words(sentence) if t.lower() not in STOPWORDS):
                if w.lower() not in {x.lower() for x in words}:
                    words.append(w)
            rare = set(sorted({w.lower() for w in words}, key=lambda w: -idf(w))[:n_terms])
            terms = [w for w in words if w.lower() in rare]
            extra = [t for t in title if t not in rare]
            out.append((" ".join(extra + terms), p.text))
    return out


def _clean_llm_output(text: str) -> str:
    """First non-empty line, without a 'Question:' prefix, list marker or quotes."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    line = _PREFIX.sub("", line).lstrip("-*0123456789. ").strip().strip("\"'`").strip()
    if "?" in line:
        line = line[: line.index("?") + 1]
    return line


def llm_queries(
    passages: Sequence[Chunk],
    model_path: str,
    *,
    per_passage: int = 1,
    batch_size: int = 8,
    max_new_tokens: int = 40,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, str]]:
    """(query, passage) candidates from an instruction-tuned causal LM, ``batch_size`` prompts at a time.

    Greedy decoding for one query per passage; sampling (temperature 0.8) for several, so they differ.
    ``progress(done, total)`` is called after each batch (the job log shows it; a tqdm bar otherwise).
    """
    # imported here, not at module level: synthetic.py is on `job create`'s path, which must not load torch
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    tok.padding_side = "left"  # decoder-only batch generation pads on the left
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()
    torch.manual_seed(seed)
    words_cap = 180  # keeps prompts short: the opening of a chunk is enough to ask about it
    out: list[tuple[str, str]] = []
    bar = tqdm(total=len(passages), desc="synthetic queries", disable=progress is not None)
    for start in range(0, len(passages), batch_size):
        batch = passages[start : start + batch_size]
        prompts = [
            tok.apply_chat_template(
                [{"role": "user", "content": LLM_PROMPT.format(passage=" ".join(p.text.split()[:words_cap]))}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for p in batch
        ]
        enc = tok(prompts, return_tensors="pt", padding=True).to(device)
        sample = per_passage > 1
        with torch.no_grad():
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=sample,
                temperature=0.8 if sample else None,
                top_p=0.95 if sample else None,
                top_k=None,
                num_return_sequences=per_passage,
                pad_token_id=tok.pad_token_id,
            )
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in enumerate(texts):
            out.append((_clean_llm_output(text), batch[i // per_passage].text))
        bar.update(len(batch))
        if progress is not None:
            progress(min(start + batch_size, len(passages)), len(passages))
    bar.close()
    return out


# ---------------------------------------------------------------------------------------------
# Cleaning


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces (punctuation dropped): the exact-duplicate key."""
    return " ".join(w.lower() for w in _words(text))


def dedupe(candidates: Sequence[tuple[str, str]], jaccard: float) -> tuple[list[tuple[str, str]], int, int]:
    """(kept, exact duplicates, near duplicates): the first of equal/near-equal queries wins.

    Near-duplicate: content-word Jaccard ≥ ``jaccard`` with a kept query (compared only with kept
    queries sharing a content word, through an inverted index).
    """
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    index: dict[str, list[int]] = {}
    sets: list[frozenset[str]] = []
    exact = near = 0
    for query, passage in candidates:
        key = normalise(query)
        if key in seen:
            exact += 1
            continue
        words = frozenset(_content(query))
        candidates_idx = {i for w in words for i in index.get(w, ())}
        if words and any(len(words & sets[i]) / len(words | sets[i]) >= jaccard for i in candidates_idx):
            near += 1
            continue
        seen.add(key)
        for w in words:
            index.setdefault(w, []).append(len(kept))
        sets.append(words)
        kept.append((query, passage))
    return kept, exact, near


def _copied(query: str, passage: str) -> bool:
    """The query is a verbatim span of the passage (modulo case and punctuation)."""
    q = normalise(query)
    return bool(q) and f" {q} " in f" {normalise(passage)} "


def roundtrip_filter(
    candidates: Sequence[tuple[str, str]], passages: Sequence[str], embedder: Any, k: int, batch_size: int = 64
) -> list[bool]:
    """Per candidate: is its passage among ``embedder``'s top-``k`` passages for its query?"""
    import torch  # lazily, as in llm_queries

    if not candidates:
        return []
    kwargs = {"normalize_embeddings": True, "convert_to_tensor": True, "show_progress_bar": False}
    docs = embedder.encode(list(passages), batch_size=batch_size, **kwargs)
    qs = embedder.encode([q for q, _ in candidates], batch_size=batch_size, **kwargs)
    position = {text: i for i, text in enumerate(passages)}
    top = torch.topk(qs @ docs.T, k=min(k, len(passages)), dim=1).indices.tolist()
    return [position[p] in row for (_, p), row in zip(candidates, top, strict=True)]


def clean(
    candidates: Sequence[tuple[str, str]],
    passages: Sequence[str],
    config: CleaningConfig,
    embedder: Any | None,
) -> tuple[list[Pair], int, int, dict[str, int]]:
    """Deduplicate then filter candidates; returns (pairs, exact dups, near dups, filtered by reason)."""
    unique, exact, near = dedupe(candidates, config.near_duplicate_jaccard)
    filtered = {"empty": 0, "too_short": 0, "too_long": 0, "copied": 0, "not_retrievable": 0}
    survivors: list[tuple[str, str]] = []
    for query, passage in unique:
        n_words = len(_words(query))
        reason = (
            "empty" if n_words == 0
            else "too_short" if n_words < config.min_query_words
            else "too_long" if n_words > config.max_query_words
            else "copied" if _copied(query, passage)
            else None
        )
        if reason:
            filtered[reason] += 1
        else:
            survivors.append((query, passage))
    if config.roundtrip_k > 0 and embedder is not None:
        ok = roundtrip_filter(survivors, passages, embedder, config.roundtrip_k)
        filtered["not_retrievable"] = ok.count(False)
        survivors = [c for c, keep in zip(survivors, ok, strict=True) if keep]
    return [Pair(q, p) for q, p in survivors], exact, near, filtered
