"""User-facing errors: each says what is wrong, where, and what to do about it."""

from __future__ import annotations


class DomainRagError(Exception):
    """Base class for errors the CLI prints as a message instead of a traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class DatasetError(DomainRagError):
    """A dataset file is missing or malformed; names the file, line and field."""

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = path if line is None else f"{path}:{line}"
        if field is not None:
            where += f" (field '{field}')"
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{where}: {problem}", hint=hint)


class NotFoundError(DomainRagError):
    """A catalogue object (model, index, app, job) does not exist."""


class ConflictError(DomainRagError):
    """An object already exists, or a request contradicts existing state."""


class DimensionMismatchError(DomainRagError):
    """An index's vector dimension differs from its embedding model's output dimension."""

    def __init__(self, index: str, index_dim: int, model: str, model_dim: int, *, query: bool = False) -> None:
        self.index_dim, self.model_dim = index_dim, model_dim
        super().__init__(
            f"index '{index}' stores {index_dim}-dimensional vectors but embedding model "
            f"'{model}' produces {model_dim}-dimensional vectors; "
            + ("the query cannot be run against it" if query else "nothing was written"),
            hint=f"create a new index with --embedding-model {model} (its dimension is read from the "
            f"model), or use the {index_dim}-dimensional model the index was built with",
        )


class StorageError(DomainRagError):
    """A data-lake location cannot be read or written."""


def model_load_error(kind: str, name: str, exc: BaseException) -> DomainRagError:
    """A model that would not load (missing folder, unknown name, no network for a hub id), said in one line
    instead of the loading library's traceback."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
    return DomainRagError(
        f"cannot load {kind} model '{name}': {first}",
        hint="use a registered model (`domainrag model list`), a base model name, a local model folder, or a hub "
        "id with network access (HF_HUB_OFFLINE=0)",
    )
