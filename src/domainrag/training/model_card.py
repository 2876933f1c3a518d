"""The model card of a trained artifact: ``README.md`` with Hugging Face YAML front matter, and ``model_card.json``.

Both travel with the artifact to other machines, so they hold no absolute paths: the dataset is named by
its lake key (or URL, or file name), paths in the metrics are made relative to the job folder, and the
base model is named by its portable id (zoo name or hub id). The front matter uses the Hugging Face
model-card metadata fields (base_model, library_name, pipeline_tag, tags, license, datasets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from domainrag.storage.lake import sha256_file, split_scheme
from domainrag.training.spec import JobSpec
from domainrag.zoo import BASE_MODELS

LIBRARY = {"sft": "peft", "embedding": "sentence-transformers", "reranker": "sentence-transformers"}
PIPELINE = {"sft": "text-generation", "embedding": "sentence-similarity", "reranker": "text-ranking"}
FORMAT_TAG = {"sft": "lora", "embedding": "sentence-transformers", "reranker": "cross-encoder"}


def portable_location(value: str, lake_root: str | None = None, workdir: Path | None = None) -> str:
    """``value`` without this machine's folders: a lake key, a path relative to ``workdir``, a remote URL as
    it is, or else a local path's file name."""
    if lake_root and value.startswith(lake_root.rstrip("/") + "/"):
        return value[len(lake_root.rstrip("/")) + 1 :]
    if split_scheme(value) not in ("file", "local"):
        return value
    path = Path(value.removeprefix("file://"))
    if not path.is_absolute():
        return value
    if workdir is not None and path.is_relative_to(workdir):
        return path.relative_to(workdir).as_posix()
    return path.name


def _portable(value: Any, workdir: Path | None) -> Any:
    """Absolute local paths inside nested metrics made relative to ``workdir`` (or cut to their file name)."""
    if isinstance(value, dict):
        return {k: _portable(v, workdir) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, workdir) for v in value]
    if isinstance(value, str) and value.startswith(("/", "file://")):
        return portable_location(value, workdir=workdir)
    return value


def front_matter(spec: JobSpec, dataset: str) -> dict[str, Any]:
    """Hugging Face model-card metadata of an artifact trained from ``spec`` on ``dataset`` (portable name)."""
    zoo = BASE_MODELS.get(spec.base_model)
    local_base = zoo is None and Path(spec.base_model).expanduser().exists()
    base_id = zoo.hub_id if zoo else (None if local_base else spec.base_model)
    meta: dict[str, Any] = {}
    if base_id:
        meta["base_model"] = base_id
    meta["library_name"] = LIBRARY[spec.algorithm]
    meta["pipeline_tag"] = PIPELINE[spec.algorithm]
    meta["tags"] = ["domainrag", spec.algorithm, FORMAT_TAG[spec.algorithm],
                    *([f"domainrag-zoo:{spec.base_model}"] if zoo else [])]
    if zoo and zoo.license:
        meta["license"] = zoo.license
    meta["datasets"] = [dataset]
    return meta


def write_model_card(
    artifact: Path,
    spec: JobSpec,
    dataset: Path,
    metrics: dict[str, Any],
    *,
    lake_root: str | None = None,
    workdir: Path | None = None,
    base_weights_sha256: str | None = None,
) -> None:
    """model_card.json and README.md in the artifact folder: base model, data hash, hyper-parameters, metrics.

    ``lake_root`` and ``workdir`` (the job folder) let dataset and metric paths be written relative to them.
    """
    given = spec.hyperparameters.model_dump(mode="json", exclude_unset=True)
    dataset_name = portable_location(spec.dataset, lake_root, workdir)
    base_name = spec.base_model if not Path(spec.base_model).expanduser().exists() else Path(spec.base_model).name
    metrics = _portable(metrics, workdir)
    card: dict[str, Any] = {
        "base_model": base_name,
        "algorithm": spec.algorithm,
        "dataset": {"uri": dataset_name, "sha256": sha256_file(dataset), "bytes": dataset.stat().st_size},
        "hyperparameters": given,
        "metrics": metrics,
    }
    if base_weights_sha256:
        card["base_model_weights_sha256"] = base_weights_sha256
    if spec.algorithm == "embedding":
        card["output_dimension"] = metrics.get("dimension")
    elif spec.algorithm == "sft":
        tpl = artifact / "chat_template.jinja"
        card["chat_template"] = tpl.read_text() if tpl.exists() else "from tokenizer_config.json"
        if metrics.get("stop_reason"):  # why training ended: all steps, or early stopping (with the losses)
            card["stopped"] = {"reason": metrics["stop_reason"], "detail": metrics.get("stop_detail")}
    (artifact / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    lines = [
        "---",
        yaml.safe_dump(front_matter(spec, dataset_name), sort_keys=False).rstrip(),
        "---",
        "",
        f"# Model card: {spec.name}",
        "",
        f"- base model: `{base_name}`"
        + (f" (weights sha256 {base_weights_sha256[:12]})" if base_weights_sha256 else ""),
        f"- algorithm: `{spec.algorithm}`",
        f"- dataset: `{dataset_name}` (sha256 {card['dataset']['sha256'][:12]}, {card['dataset']['bytes']} bytes)",
        f"- hyper-parameters: `{json.dumps(given)}`",
        *([f"- training stopped: {metrics.get('stop_detail') or metrics['stop_reason']}"] if "stopped" in card else []),
        "",
        "## Metrics",
        "",
        "```json",
        json.dumps(metrics, indent=2, default=str),
        "```",
    ]
    (artifact / "README.md").write_text("\n".join(lines) + "\n")
