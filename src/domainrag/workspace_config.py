"""The declarative workspace file (``domainrag apply -f app.yaml``): indexes and apps as typed pydantic models.

Read with PyYAML's node tree kept, so every problem (YAML syntax, an unknown or invalid field, a wrong
type) is reported as ``file:line (field 'apps.docs.retrieval.top_k')``. The file says what should exist;
applying it (in ``domainrag.cli.apply``) creates what is missing, updates what differs and leaves the rest.

```yaml
version: 1
indexes:
  manuals:                          # index name
    embedding_model: all-minilm-l6-v2
    store: {type: embedded}         # or opensearch / elasticsearch with their options
    source: ./manuals               # optional: ingested on apply (relative to this file)
apps:
  DomainRAG:                        # app name
    model: smollm2-135m-instruct
    retrieval: {index: manuals, top_k: 5, mode: hybrid}
    generation: {temperature: 0.1, max_new_tokens: 200}
```
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from domainrag.errors import DatasetError
from domainrag.index import StoreConfig
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.retrieval.retriever import RetrievalConfig

Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class ConfigError(DatasetError):
    """A workspace file is malformed: names the file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IndexDecl(_Strict):
    """An index: its embedding model, its vector store, and optionally documents to ingest."""

    embedding_model: str = Field(description="registered embedding model, base model name or local folder")
    store: StoreConfig = Field(default_factory=EmbeddedStoreConfig, description="vector store backend config")
    source: str | None = Field(None, description="file, folder or s3:// / oss:// URL ingested on every apply "
                               "(idempotent); relative paths are relative to the YAML file")


class AppDecl(_Strict):
    """A RAG app: LLM, retrieval config and generation defaults (the fields of `app create`)."""

    model: str = Field(description="registered LLM or base model")
    retrieval: RetrievalConfig
    generation: dict[str, Any] = Field(default_factory=dict, description="temperature, max_new_tokens, "
                                       "system_prompt, not_found_answer (checked when applied)")


class WorkspaceConfig(_Strict):
    version: Literal[1] = 1
    indexes: dict[Name, IndexDecl] = Field(default_factory=dict)
    apps: dict[Name, AppDecl] = Field(default_factory=dict)


class Located:
    """A parsed YAML file that can say on which line a field path is."""

    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self.path, self.root = path, root

    def line(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node along ``loc`` (parts that are not in the file, such as a
        union's tag in a pydantic location, are skipped)."""
        node, line = self.root, None
        for part in loc:
            child = _child(node, part)
            if child is None:
                continue
            key_node, node = child
            line = (key_node or node).start_mark.line + 1
        return line if line is not None else (self.root.start_mark.line + 1 if self.root is not None else None)

    def error(self, loc: Sequence[str | int], problem: str, hint: str | None = None) -> ConfigError:
        field = ".".join(str(p) for p in loc) or None
        return ConfigError(str(self.path), problem, line=self.line(loc), field=field, hint=hint)

    def from_validation(self, exc: ValidationError, prefix: Sequence[str | int] = ()) -> ConfigError:
        """The first validation problem, placed in the file (the others follow in the message)."""
        errors = exc.errors()
        first = errors[0]
        more = [f"{'.'.join(str(p) for p in (*prefix, *e['loc']))}: {e['msg']}" for e in errors[1:]]
        problem = first["msg"] + ("".join(f"\n  also {m}" for m in more) if more else "")
        return self.error((*prefix, *first["loc"]), problem)


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _duplicates(node: yaml.Node | None, loc: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], int] | None:
    """The first key given twice in one mapping (PyYAML would silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                return (*loc, name), key.start_mark.line + 1
            seen.add(name)
            found = _duplicates(value, (*loc, name))
            if found:
                return found
    if isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            found = _duplicates(value, (*loc, i))
            if found:
                return found
    return None


def load_workspace_config(path: str | Path) -> tuple[WorkspaceConfig, Located]:
    """Read and validate a workspace file; any problem raises a :class:`ConfigError` naming file, line, field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "file not found", hint="pass the YAML file with -f")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text (byte {exc.start} cannot be decoded)",
                          hint="pass the workspace's YAML file with -f, saved as UTF-8") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), f"not valid YAML: {problem}", line=mark.line + 1 if mark else None) from exc
    located = Located(path, root)
    duplicate = _duplicates(root)
    if duplicate:
        raise ConfigError(str(path), "given twice", line=duplicate[1], field=".".join(map(str, duplicate[0])))
    if not isinstance(data, dict):
        raise ConfigError(str(path), "expected a mapping with 'indexes' and/or 'apps'", line=1)
    try:
        return WorkspaceConfig.model_validate(data), located
    except ValidationError as exc:
        raise located.from_validation(exc) from exc
