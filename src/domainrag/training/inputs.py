"""What a job reads, fetched and checked: its base model and its dataset.

``job create`` runs these checks before anything is recorded, so a wrong kind of base model, a
malformed dataset or an unusable document corpus fails at once with a clear error instead
of in the worker after model loading (nothing here imports torch). The worker uses
:func:`local_dataset` to fetch the dataset it trains on.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from domainrag.data import formats
from domainrag.errors import DatasetError, DomainRagError
from domainrag.storage.lake import split_scheme
from domainrag.storage.options import open_fs
from domainrag.training import synthetic
from domainrag.zoo import BASE_MODELS, DEFAULT_EMBEDDER, DEFAULT_LLM, GENERATOR_ARCHITECTURES, local_model_config

# ---------------------------------------------------------------------------------------------
# Base models


def check_model_kind(model: str, want: str, algorithm: str) -> None:
    """Refuse a zoo model of the wrong kind (``want``: llm or embedding) and a name that resolves to nothing."""
    known = BASE_MODELS.get(model)
    if known is not None and known.kind != want:
        raise DomainRagError(
            f"base model '{model}' is an {known.kind} model; algorithm '{algorithm}' needs an {want} model",
            hint=f"use --base-model {DEFAULT_LLM if want == 'llm' else DEFAULT_EMBEDDER}",
        )
    if known is None and not Path(model).expanduser().exists() and model.count("/") != 1:
        names = ", ".join(n for n, m in BASE_MODELS.items() if m.kind == want)
        raise DomainRagError(
            f"unknown base model '{model}'",
            hint=f"use one of: {names}; or a local model folder; or a hub id like org/name",
        )


def check_encoder(model: str) -> None:
    """Refuse a base model folder that is a text generator (causal LM), not an encoder.

    sentence-transformers would wrap a causal LM in mean pooling and train it without complaint;
    that is never what an embedding or reranker job wants, so it fails here, before loading. Zoo
    names and hub ids (not local) are left to sentence-transformers.
    """
    if model in BASE_MODELS:
        return
    found = local_model_config(
        model, hint="use all-minilm-l6-v2, a sentence-transformers / BERT-style encoder folder, or a hub id"
    )
    if found is None:
        return
    cfg, archs = found
    generator = next((a for a in archs if a.endswith(GENERATOR_ARCHITECTURES)), None)
    if generator or cfg.get("is_decoder"):
        raise DomainRagError(
            f"base model '{model}' is a text generator ({generator or cfg.get('model_type')}), not an encoder",
            hint="embedding and reranker jobs start from an encoder such as all-minilm-l6-v2; "
            "use --algorithm sft to fine-tune an LLM",
        )


def check_chat_model(model: str) -> None:
    """Refuse a local base model folder that is not a chat-capable causal LM, before any loading.

    An encoder (BERT, MiniLM ...) or a folder without a chat template would otherwise fail in the
    worker after the dataset was tokenised and the weights loaded. Zoo names and hub ids (not local)
    are not checked here.
    """
    if model in BASE_MODELS:
        return
    found = local_model_config(
        model, hint="use smollm2-135m-instruct, qwen2.5-0.5b-instruct, a transformers causal-LM folder or a hub id"
    )
    if found is None:
        return
    cfg, archs = found
    path = Path(model).expanduser()
    if not any(a.endswith(GENERATOR_ARCHITECTURES) for a in archs):
        what = ", ".join(archs) or cfg.get("model_type") or "unknown architecture"
        raise DomainRagError(
            f"base model '{model}' is not a causal language model ({what})",
            hint="SFT fine-tunes a text generator (…ForCausalLM); use --algorithm embedding or reranker for encoders",
        )
    tok_cfg = path / "tokenizer_config.json"
    has_template = (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file()
    if not has_template and tok_cfg.is_file():
        has_template = bool(json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template"))
    if not has_template:
        raise DomainRagError(
            f"base model '{model}' has no chat template",
            hint="SFT trains on the model's own chat template: use an instruct/chat model",
        )


# ---------------------------------------------------------------------------------------------
# Datasets


def is_local(url: str) -> bool:
    """True for a plain path or a ``file://`` URL."""
    return split_scheme(url) in ("file", "local")


def _path(url: str) -> Path:
    return Path(url.split("://", 1)[1] if "://" in url else url).expanduser()


def local_dataset(url: str, workdir: Path) -> Path:
    """A local path for a dataset URL: plain paths as-is, remote objects downloaded under ``workdir``."""
    if is_local(url):
        path = _path(url)
        if not path.exists():
            raise DatasetError(str(path), "dataset file does not exist", hint="check the --dataset path")
        return path
    target = workdir / "input" / Path(url.rstrip("/")).name
    target.parent.mkdir(parents=True, exist_ok=True)
    fs, path, _ = open_fs(url)
    if not fs.exists(path):
        raise DatasetError(url, "dataset object does not exist", hint="check the bucket and key")
    fs.get_file(path, str(target))
    return target


def check_dataset(url: str, chat: bool) -> None:
    """Parse a local dataset now (chat conversations or pairs) so format errors surface before the job starts."""
    if not is_local(url):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = local_dataset(url, Path(tmp))
        if chat:
            formats.read_chat_dataset(path)
        else:
            formats.read_pairs(path)


def check_corpus(url: str, synthetic_queries: str | None) -> bool:
    """For an encoder job: True (documents validated) when the local dataset is a document corpus
    that gets synthetic queries; False when it is a pairs file (or remote) and is checked as such."""
    path = _path(url) if is_local(url) else None
    mode = synthetic.choose_mode(synthetic_queries, path) if path is not None and path.exists() else None
    if mode is None or path is None:
        return False
    if path.is_dir():  # the worker fetches, hashes (model card) and uploads one dataset file
        raise DatasetError(
            str(path),
            "a job dataset must be one file; this is a folder of documents",
            hint="put the documents in one JSONL file, one {\"id\": ..., \"title\": ..., \"text\": ...} per line",
        )
    synthetic.load_passages(path)  # unreadable or empty documents fail here
    return True
