"""An app's model *without* retrieval, for the "with vs without retrieval" comparison of ``eval answers``.

The question goes to the app's LLM alone, with the app's generation settings and a neutral
closed-book system prompt (the app's own prompt demands numbered passages, which would make the
model refuse everything and measure nothing). The refusal sentence is the app's, so refusal
metrics stay comparable with the retrieval run.
"""

from __future__ import annotations

from typing import Any

from domainrag.serving.rag import RagAnswer

CLOSED_BOOK_SYSTEM_PROMPT = (
    "You are a domain assistant. Answer the question concisely from what you know. "
    "If you do not know the answer, reply exactly: \"{not_found}\""
)
LABEL_SUFFIX = " (no retrieval)"


class ClosedBookApp:
    """Wraps a loaded :class:`~domainrag.serving.rag.RagApp`; ``invoke`` never retrieves."""

    uses_retrieval = False

    def __init__(self, app: Any) -> None:
        if getattr(app, "generator", None) is None:
            raise RuntimeError(f"app '{getattr(app, 'name', '?')}' has no generator loaded")
        self.app = app
        self.system_prompt = CLOSED_BOOK_SYSTEM_PROMPT.format(not_found=app.generation.not_found_answer)

    def messages(self, query: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": query.strip()}]

    def invoke(self, query: str) -> RagAnswer:
        if not query.strip():
            raise ValueError("query is empty")
        text = self.app.generator.generate(self.messages(query), self.app.generation.to_generation_config())
        return RagAnswer(text.strip(), [], [])


def closed_book_config(config: dict[str, Any], not_found: str) -> dict[str, Any]:
    """The report's configuration column of a closed-book run: the app's model, no retrieval settings."""
    keep = {k: v for k, v in config.items() if k in ("app", "model") or k.startswith("generation.")}
    return {**keep, "retrieval": "none (question only)",
            "system_prompt": CLOSED_BOOK_SYSTEM_PROMPT.format(not_found=not_found)}
