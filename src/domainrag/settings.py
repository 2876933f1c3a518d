"""Where things live: the workspace (catalogue + local lake) and the model cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from domainrag.errors import DomainRagError

DEFAULT_WORKSPACE = ".domainrag"


def cache_dir() -> Path:
    """Local cache for converted base models and lake downloads (never inside the repo)."""
    root = os.environ.get("DOMAINRAG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "domainrag"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one workspace.

    ``workspace`` is always a local folder: it holds the SQLite catalogue. ``lake`` is where data
    and artifacts live: the workspace folder itself by default, or any fsspec URL (``s3://``,
    ``oss://``) set with ``DOMAINRAG_LAKE``.
    """

    workspace: Path
    lake: str

    @property
    def catalog_path(self) -> Path:
        return self.workspace / "catalog.db"

    @classmethod
    def resolve(cls, workspace: str | os.PathLike[str] | None = None, lake: str | None = None) -> Settings:
        ws = Path(workspace or os.environ.get("DOMAINRAG_HOME") or DEFAULT_WORKSPACE).expanduser().resolve()
        if ws.exists() and not ws.is_dir():
            raise DomainRagError(f"workspace {ws} is a file, not a folder",
                                 hint="pass a folder with --workspace (or $DOMAINRAG_HOME); it is created if missing")
        ws.mkdir(parents=True, exist_ok=True)
        return cls(workspace=ws, lake=lake or os.environ.get("DOMAINRAG_LAKE") or str(ws))
