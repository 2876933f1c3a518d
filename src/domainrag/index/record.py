"""An index's catalogue record (typed) and the rule index names follow.

The record is stored as the same JSON as before (``embedding_model``, ``dimension``, ``store``, and the
``chunks``/``documents`` counts after an ingest); :class:`IndexRecord` reads it as typed fields.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domainrag.errors import DomainRagError
from domainrag.index.config import EmbeddedStoreConfig, StoreConfig, parse_store_config

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def validate_index_name(name: str) -> str:
    """``name`` if it is a safe index name, else a clear error (before any engine sees it).

    One rule for every engine: 1-128 of letters, digits, ``_``, ``.``, ``-``, starting with a letter or
    digit, so a name can never be a path (``a/b``, ``../evil``) on the embedded engine's disk.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise DomainRagError(
            f"invalid index name {name!r}",
            hint="use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit (no '/' or '..')",
        )
    return name


class EmbedderPin(BaseModel):
    """Which exact embedding model an index's vectors come from: its version and weights digest.

    ``version`` is the registered model's version (``None`` for a base model, a path or a hub id);
    ``digest`` is the registered artifact's manifest digest, or a digest of a local folder's weight
    files (``None`` when the weights are not local, e.g. a hub id).
    """

    model: str
    version: int | None = None
    digest: str | None = None
    bulk_encoders: list[str] = Field(default_factory=list)
    """How the index's chunk vectors were computed, each encoder once (``torch``, ``onnx-fp32``, ``onnx-int8``,
    ``onnx-int8-unguarded``; empty on indexes from before it was recorded). Not part of the model's identity:
    torch and float32 ONNX vectors agree to cosine 0.9999 and guarded int8 ones stay within the guard's bound
    of them, so an index may mix them without ``--reembed``; ``onnx-int8-unguarded`` marks vectors of a forced
    int8 that failed the guard, a reason to re-embed if retrieval suffers."""

    def with_bulk_encoder(self, used: str | None) -> EmbedderPin:
        """This pin with ``used`` added to :attr:`bulk_encoders` (unchanged if None or already there)."""
        if not used or used in self.bulk_encoders:
            return self
        return self.model_copy(update={"bulk_encoders": sorted([*self.bulk_encoders, used])})

    def describe(self) -> str:
        parts = [f"'{self.model}'"]
        if self.version is not None:
            parts.append(f"v{self.version}")
        if self.digest:
            parts.append(f"digest {self.digest[:12]}")
        if self.bulk_encoders:
            parts.append(f"(bulk: {', '.join(self.bulk_encoders)})")
        return " ".join(parts)


class IndexRecord(BaseModel):
    """One catalogued index: the embedding model it was built with, its dimension and its store."""

    model_config = ConfigDict(extra="allow")

    name: str
    embedding_model: str
    dimension: int
    store: StoreConfig = Field(default_factory=EmbeddedStoreConfig)
    embedder: EmbedderPin | None = None  # absent on indexes created before pinning: pinned at their next ingest
    chunks: int | None = None
    documents: int | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @field_validator("store", mode="before")
    @classmethod
    def _store(cls, value: Any) -> Any:
        return parse_store_config(value) if value is None or isinstance(value, (str, dict)) else value
