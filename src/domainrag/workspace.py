"""One handle on a workspace: settings, catalogue, data lake, and name → model/store resolution.

Every CLI command and the HTTP API start from a :class:`Workspace`; layers below take plain
objects (paths, stores, embedders) so they stay testable on their own.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from domainrag.data.chunking import check_window
from domainrag.errors import ConflictError, DomainRagError, NotFoundError, StorageError
from domainrag.index import (
    EmbedderPin,
    IndexRecord,
    StoreConfig,
    VectorStore,
    open_store,
    parse_store_config,
    validate_index_name,
)
from domainrag.index.ingest import IngestReport, ParseProgress, ProgressFn, ingest_paths
from domainrag.retrieval.embedder import Embedder, load_embedder
from domainrag.retrieval.reranker import load_reranker
from domainrag.settings import Settings, cache_dir
from domainrag.storage.catalog import Catalog
from domainrag.storage.lake import Lake, sha256_file
from domainrag.storage.preflight import preflight, require
from domainrag.zoo import (
    BASE_MODELS,
    ModelRecord,
    adapter_base_digest,
    gguf_parts,
    resolve_embedder,
    resolve_llm,
    weights_digest,
)


class Workspace:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.resolve()
        self.lake = Lake(self.settings.lake)
        # Paths under the lake or the workspace folder are catalogued relative to them: a moved, copied or
        # synced workspace resolves them against wherever it is opened.
        self.catalog = Catalog(self.settings.catalog_path,
                               roots={"lake": self.lake.root, "workspace": str(self.settings.workspace)})

    @classmethod
    def open(cls, workspace: str | Path | None = None, lake: str | None = None) -> Workspace:
        return cls(Settings.resolve(workspace, lake))

    # -- models --------------------------------------------------------------------------------
    def model_record(self, name: str) -> dict[str, Any] | None:
        return self.catalog.get("model", name)

    def model_dir(self, name: str) -> Path:
        """Local folder of a registered model's artifact, verified against its manifest.

        Local lakes are read in place; remote ones are downloaded once into the cache, keyed by
        the manifest's checksum so repeated loads are free.
        """
        return self._artifact_dir(name, self.catalog.require("model", name))

    def _artifact_dir(self, name: str, record: dict[str, Any]) -> Path:
        key = record.get("key")
        if not key:
            raise DomainRagError(f"model '{name}' has no stored weights (it is served by its {record.get('format')} "
                                 "endpoint)", hint=f"see `domainrag model show {name}`")
        if self.lake.is_local:
            folder = self.lake.local_path(key)
        else:
            manifest = self.lake.read_json(f"{key}/manifest.json")
            digest = manifest.get("digest", "nodigest")[:16]
            folder = cache_dir() / "lake-models" / f"{name}-{record['version']}-{digest}"
            with FileLock(str(folder) + ".lock"):
                if not (folder / "manifest.json").exists():
                    tmp = folder.with_name(folder.name + ".partial")
                    shutil.rmtree(tmp, ignore_errors=True)
                    self.lake.download(key, tmp)
                    verify_manifest(tmp)  # a corrupt download never becomes the cache entry
                    tmp.rename(folder)
                    return folder  # just verified: no second hashing pass
        verify_manifest(folder)
        return folder

    def resolve_llm(self, name: str) -> ResolvedLLM:
        """The one place an LLM name is resolved: a catalogue record, else a base model, local path or hub id.

        One catalogue read; nothing is loaded, downloaded or converted. Raises for unknown names and
        for names of other kinds of model. Pass the result on (to :meth:`llm_path`, :meth:`verify_llm`,
        the serving backends) instead of resolving the name again.
        """
        record = self.model_record(name)
        if record is None:
            base = BASE_MODELS.get(name)
            if base is not None and base.kind != "llm":
                raise DomainRagError(f"'{name}' is an embedding model, not an LLM")
            if base is None and not (Path(name).exists() or "/" in name):
                raise NotFoundError(
                    f"model '{name}' is neither registered nor a known base model",
                    hint="run `domainrag model list`, or pass a base model such as smollm2-135m-instruct",
                )
        elif record.get("kind") != "llm":
            raise DomainRagError(f"model '{name}' is a {record.get('kind')} model, not an LLM")
        return ResolvedLLM(name, record)

    def verify_llm(self, llm: ResolvedLLM) -> None:
        """Check an LLM's weights are there without converting anything (validation uses it).

        A registered model's files are checked against its manifest (a remote lake's are fetched into
        the cache); a base model's packages must be installed (a LoRA adapter's base model too). Paths
        and hub ids are checked when they load.
        """
        if llm.record is None:
            _check_base_llm(llm.name)
            return
        self._artifact_dir(llm.name, llm.record)
        if llm.record.get("format") == "lora-adapter":
            _check_base_llm(llm.record["base_model"])

    def llm_path(self, name: str | ResolvedLLM) -> tuple[str, str | None]:
        """(base model folder, adapter folder or None) of an LLM, ready to load (a base model is converted once)."""
        llm = name if isinstance(name, ResolvedLLM) else self.resolve_llm(name)
        if llm.record is None:
            return resolve_llm(llm.name), None
        folder = self._artifact_dir(llm.name, llm.record)
        if llm.record.get("format") == "lora-adapter":
            base = resolve_llm(llm.record["base_model"])
            _check_adapter_base(llm.name, folder / "artifact", base)
            return base, str(folder / "artifact")
        return str(folder / "artifact"), None

    def embedder(self, name: str) -> Embedder:
        """Loaded (cached) embedder of a registered embedding model, or of a base-model name, path or hub id."""
        found = self.model_record(name)
        if found is None:
            path = resolve_embedder(name)
            return load_embedder(path, name, weights_digest(path))
        record = ModelRecord.model_validate(found)
        if record.kind != "embedding":
            raise DomainRagError(f"model '{name}' is a {record.kind} model, not an embedding model")
        return load_embedder(str(self.model_dir(name) / "artifact"), name)

    def embedder_pin(self, name: str) -> EmbedderPin:
        """The exact embedding model ``name`` resolves to now: registered version and digest, or a digest of
        a local folder's weight files."""
        found = self.model_record(name)
        if found is not None:
            record = ModelRecord.model_validate(found)
            return EmbedderPin(model=name, version=record.version, digest=record.digest)
        return EmbedderPin(model=name, digest=weights_digest(resolve_embedder(name)))

    def index_embedder(self, index: str) -> Embedder:
        """The embedder of ``index``, refused when it is no longer the model the index's vectors came from."""
        record = self.index_record(index)
        if record.embedder is not None:
            now = self.embedder_pin(record.embedding_model)
            if (now.version, now.digest) != (record.embedder.version, record.embedder.digest):
                dimension = self.embedder(record.embedding_model).dimension  # loaded anyway on success
                changed = f" ({dimension}-dimensional)" if dimension != record.dimension else ""
                raise DomainRagError(
                    f"index '{index}' holds {record.dimension}-dimensional vectors of {record.embedder.describe()}, "
                    f"but that model is now {now.describe()}{changed}: mixing them would return wrong results",
                    hint=f"re-embed the index (`domainrag ingest PATH... --index {index} --reembed`) or create "
                         "a new index",
                )
        return self.embedder(record.embedding_model)

    def reranker(self, name: str) -> Any:
        """Loaded (cached) ``CrossEncoder`` of a registered reranker model, or of a local cross-encoder folder."""
        record = self.model_record(name)
        if record is None:
            if Path(name).expanduser().is_dir():
                return load_reranker(str(Path(name).expanduser().resolve()))
            raise NotFoundError(
                f"reranker model '{name}' is not registered",
                hint="train one with `job create --algorithm reranker` and register it with `model create`",
            )
        if record.get("kind") != "reranker":
            raise DomainRagError(f"model '{name}' is a {record.get('kind')} model, not a reranker")
        return load_reranker(str(self.model_dir(name) / "artifact"))

    def register_model(
        self,
        name: str,
        source_dir: Path,
        *,
        kind: str,
        fmt: str,
        base_model: str | None,
        source: dict[str, Any],
        extra: dict[str, Any] | None = None,
        new_version: bool = False,
    ) -> dict[str, Any]:
        """Copy an artifact folder into ``models/<name>/<version>/`` with a manifest, then catalogue it.

        Versions are immutable: re-registering a name needs ``new_version``. The catalogue row is
        written last, so a failed upload never registers a half-copied model.
        """
        if not source_dir.is_dir():
            raise StorageError(f"model source folder {source_dir} does not exist")
        existing = self.model_record(name)
        if existing and not new_version:
            raise DomainRagError(
                f"model '{name}' already exists (version {existing['version']})",
                hint="pass --new-version to register another version, or choose another name",
            )
        version = int(existing["version"]) + 1 if existing else 1
        key = f"models/{name}/{version}"
        files = sorted(p for p in source_dir.rglob("*") if p.is_file())
        manifest_files = [
            {"path": f"artifact/{p.relative_to(source_dir).as_posix()}", "size": p.stat().st_size,
             "sha256": sha256_file(p)}
            for p in files
        ]
        digest = _digest(manifest_files)
        manifest = {"name": name, "version": version, "kind": kind, "format": fmt, "base_model": base_model,
                    "source": source, "files": manifest_files, "digest": digest, **(extra or {})}
        self.lake.delete(key)  # leftovers of a crashed earlier attempt (never catalogued)
        self.lake.upload(source_dir, f"{key}/artifact")
        self.lake.write_json(f"{key}/manifest.json", manifest)
        record = {"version": version, "kind": kind, "format": fmt, "base_model": base_model, "key": key,
                  "uri": self.lake.url(key), "source": source, "digest": digest, **(extra or {})}
        return self.catalog.put("model", name, record)

    # -- datasets ------------------------------------------------------------------------------
    def upload_dataset(self, source: Path, name: str) -> tuple[str, int]:
        """Upload a local file or folder to ``raw/<name>/`` and catalogue it; returns (URL, file count)."""
        if not source.exists():
            raise DomainRagError(f"{source} does not exist")
        keys = self.lake.upload(source, f"raw/{name}" + ("" if source.is_dir() else f"/{source.name}"))
        url = self.lake.url(f"raw/{name}")
        self.catalog.put("dataset", name, {"uri": url, "files": len(keys)})
        return url, len(keys)

    # -- indexes -------------------------------------------------------------------------------
    def index_record(self, name: str) -> IndexRecord:
        """The catalogued index ``name`` (NotFoundError naming the known ones if absent)."""
        return IndexRecord.model_validate(self.catalog.require("index", name))

    def store(self, index: str) -> VectorStore:
        return open_store(index, self.index_record(index).store, self.default_store_uri)

    @property
    def default_store_uri(self) -> str:
        return str(self.settings.workspace / "indexes")


# -- index control plane: catalogue + lake around the index layer's plain-object operations ------


def create_index(
    ws: Workspace, name: str, embedding_model: str, store: StoreConfig | dict[str, Any] | str | None = None
) -> dict[str, Any]:
    """Create an index whose vector dimension is read from the embedding model.

    The name is validated first; an index that already exists in the store with another dimension is
    refused before any write.
    """
    validate_index_name(name)
    if ws.catalog.get("index", name) is not None:
        raise ConflictError(f"index '{name}' already exists", hint="use another name or `domainrag index delete`")
    cfg = parse_store_config(store) if store is None or isinstance(store, (str, dict)) else store
    embedder = ws.embedder(embedding_model)
    backend = open_store(name, cfg, ws.default_store_uri)
    backend.check_dimension(embedder.dimension, embedding_model)
    backend.create(embedder.dimension)
    pin = ws.embedder_pin(embedding_model)
    return ws.catalog.create("index", name, {"embedding_model": embedding_model, "dimension": embedder.dimension,
                                             "store": cfg.model_dump(), "embedder": pin.model_dump()})


def ingest(
    ws: Workspace,
    index: str,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 64,
    max_words: int = 120,
    overlap_words: int = 20,
    progress: ProgressFn | None = None,
    reembed: bool = False,
    strict: bool = False,
    parse_progress: ParseProgress | None = None,
    contextual_header: bool = True,
) -> IngestReport:
    """Load, chunk, embed and upsert files into a catalogued index; records the chunks in the lake.

    A remote lake is preflighted first (the chunk record is written there last): an unreachable
    or read-only lake fails before anything is embedded or written to the index. The chunk record
    is written only when the run changed the index. The index's embedding model must still be the one
    its vectors came from; ``reembed`` migrates instead: the index is emptied and rebuilt from
    ``paths`` with the model as it is now (and pinned to it).
    """
    check_window(max_words, overlap_words)  # before any model is loaded
    record = ws.index_record(index)
    if not ws.lake.is_local:
        require(preflight(writes=[ws.lake.url(f"chunks/{index}")]))
    store = ws.store(index)
    if reembed:
        embedder = ws.embedder(record.embedding_model)
        store.drop()
        store.create(embedder.dimension)
        ws.catalog.update("index", index, dimension=embedder.dimension,
                          embedder=ws.embedder_pin(record.embedding_model).model_dump())
    else:
        embedder = ws.index_embedder(index)
        if record.embedder is None:  # an index from before pinning: pinned to the model that fills it now
            ws.catalog.update("index", index, embedder=ws.embedder_pin(record.embedding_model).model_dump())
    report = ingest_paths(paths, store, embedder, batch_size=batch_size, strict=strict,
                          max_words=max_words, overlap_words=overlap_words, progress=progress,
                          parse_progress=parse_progress, contextual_header=contextual_header)
    pin = ws.index_record(index).embedder
    if report.written and pin is not None and pin != (new := pin.with_bulk_encoder(embedder.bulk_path)):
        ws.catalog.update("index", index, embedder=new.model_dump())  # which bulk encoder wrote these vectors
    if report.written or report.deleted_stale:
        lines = "".join(json.dumps(c.to_dict()) + "\n" for c in report.chunk_records)
        ws.lake.write_text(f"chunks/{index}/ingest-{time.strftime('%Y%m%dT%H%M%S')}.jsonl", lines)
    ws.catalog.update("index", index, chunks=store.count(), documents=store.document_count())
    return report


def delete_index(ws: Workspace, name: str) -> None:
    """Drop the index from its store, its chunk records from the lake, and its catalogue record."""
    ws.catalog.require("index", name)
    ws.store(name).drop()
    ws.lake.delete(f"chunks/{name}")
    ws.catalog.delete("index", name)


@dataclass(frozen=True)
class ResolvedLLM:
    """An LLM name resolved once by :meth:`Workspace.resolve_llm`.

    ``record`` is the model's catalogue record, or ``None`` for a base model, a local path or a hub id.
    """

    name: str
    record: dict[str, Any] | None = None

    @property
    def endpoint(self) -> dict[str, Any] | None:
        """The stored endpoint config (``model deploy``); ``None``: in-process transformers."""
        return self.record.get("endpoint") if self.record else None

    @property
    def has_weights(self) -> bool:
        """False for a model registered without weights (served only by its endpoint)."""
        return self.record is None or bool(self.record.get("key"))


def _check_base_llm(name: str) -> None:
    """Raise unless a base LLM's packages are installed (without converting it); paths and hub ids pass."""
    base = BASE_MODELS.get(name)
    if base is not None:
        gguf_parts(base)


def _check_adapter_base(name: str, adapter: Path, base: str) -> None:
    """Warn when the base weights found here are not the ones the adapter was trained on (by recorded checksum).

    A warning, not an error: the same zoo model converted by another library version can differ in bytes.
    """
    recorded = adapter_base_digest(adapter)
    found = weights_digest(base) if recorded else None
    if recorded and found and found != recorded:
        warnings.warn(f"model '{name}' is a LoRA adapter trained on base weights sha256 {recorded[:12]}, but its "
                      f"base model resolves to weights sha256 {found[:12]} here: answers may differ", stacklevel=2)


def _digest(files: list[dict[str, Any]]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def verify_manifest(folder: Path) -> dict[str, Any]:
    """Check every file of a model folder against its manifest; name the corrupt one."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise StorageError(f"{folder} has no manifest.json", hint="re-register the model with `model create`")
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.exists():
            raise StorageError(f"model file {path} listed in the manifest is missing")
        if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise StorageError(
                f"model file {path} is corrupt (checksum differs from manifest)",
                hint="re-register the model from its job or source folder",
            )
    return manifest
