"""The job process: ``python -m domainrag.training.worker --job-id ID``.

setup (state=running, fetch dataset) → fit (sft / embedding / reranker) → save (artifact, model card, loss
plot) → state=succeeded; any exception → state=failed with the reason; SIGTERM → cancelled.
A job on a remote lake trains in a local folder and uploads it at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import matplotlib

from domainrag import zoo
from domainrag.settings import Settings
from domainrag.storage.lake import Lake, sha256_file
from domainrag.training import embedding, reranker, sft
from domainrag.training.inputs import local_dataset
from domainrag.training.reporting import FileReporter, NullReporter, Reporter
from domainrag.training.spec import EmbeddingJobSpec, JobRecord, JobSpec, RerankerJobSpec, SFTJobSpec
from domainrag.workspace import Workspace

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def plot_metrics(folder: Path) -> Path | None:
    """loss.png from metrics.jsonl (training loss and any eval_* series)."""
    path = folder / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    series = sorted({k for r in rows for k in r if k in ("loss", "eval_loss") or k.startswith("eval_")})
    if not rows or not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in series:
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key, marker="." if len(pts) < 50 else None)
    ax.set_xlabel("step")
    ax.set_title(folder.name)
    ax.legend()
    ax.grid(alpha=0.3)
    out = folder / "loss.png"
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _as_dict(result: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(result):
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()}
    return dict(result)


def fit(
    spec: JobSpec, dataset: Path, workdir: Path, reporter: Reporter, resume: bool
) -> tuple[dict[str, Any], Path, str]:
    """Run the training function of the spec's algorithm; returns (metrics, artifact folder, format)."""
    where = {"dataset": dataset, "output_dir": workdir / "output", "checkpoint_dir": workdir / "checkpoints",
             "resume": resume}
    hp = spec.hyperparameters.model_dump()
    if isinstance(spec, SFTJobSpec):
        result = sft.run_sft(sft.SFTArgs(base_model=zoo.resolve_llm(spec.base_model), **where, **hp), reporter)
        full = spec.hyperparameters.finetuning == "full"  # a whole transformers model, not an adapter
        return _as_dict(result), result.adapter_dir, "hf" if full else "lora-adapter"
    base_model = zoo.resolve_embedder(spec.base_model)
    if isinstance(spec, EmbeddingJobSpec):
        emb = embedding.run_embedding(embedding.EmbeddingArgs(base_model=base_model, **where, **hp), reporter)
        return _as_dict(emb), emb.output_dir, "sentence-transformers"
    assert isinstance(spec, RerankerJobSpec)
    rr = reranker.run_reranker(reranker.RerankerArgs(base_model=base_model, **where, **hp), reporter)
    return _as_dict(rr), rr.output_dir, "cross-encoder"


def write_model_card(artifact: Path, spec: JobSpec, dataset: Path, metrics: dict[str, Any]) -> None:
    """model_card.json and README.md in the artifact folder: base model, data hash, hyper-parameters, metrics."""
    given = spec.hyperparameters.model_dump(mode="json", exclude_unset=True)
    card = {
        "base_model": spec.base_model,
        "algorithm": spec.algorithm,
        "dataset": {"uri": spec.dataset, "sha256": sha256_file(dataset), "bytes": dataset.stat().st_size},
        "hyperparameters": given,
        "metrics": metrics,
    }
    if spec.algorithm == "embedding":
        card["output_dimension"] = metrics.get("dimension")
    elif spec.algorithm == "sft":
        tpl = artifact / "chat_template.jinja"
        card["chat_template"] = tpl.read_text() if tpl.exists() else "from tokenizer_config.json"
        if metrics.get("stop_reason"):  # why training ended: all steps, or early stopping (with the losses)
            card["stopped"] = {"reason": metrics["stop_reason"], "detail": metrics.get("stop_detail")}
    (artifact / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    lines = [
        f"# Model card: {spec.name}",
        "",
        f"- base model: `{spec.base_model}`",
        f"- algorithm: `{spec.algorithm}`",
        f"- dataset: `{spec.dataset}` (sha256 {card['dataset']['sha256'][:12]}, {card['dataset']['bytes']} bytes)",
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


def run(workspace: str, lake: str, job_id: str, resume: bool = False) -> int:
    ws = Workspace(Settings.resolve(workspace, lake))
    spec = JobRecord.model_validate(ws.catalog.require("job", job_id)).job_spec()
    prefix = f"jobs/{job_id}"
    local = ws.lake.is_local
    workdir = ws.lake.local_path(prefix) if local else Path(tempfile.mkdtemp(prefix=f"domainrag-{job_id}-"))
    if not local and resume and ws.lake.exists(f"{prefix}/checkpoints"):
        ws.lake.download(f"{prefix}/checkpoints", workdir / "checkpoints")
    # Under `accelerate launch` (see training.launch) the launcher started by start_job leads the process
    # group and stays the job's pid (cancel signals the group); only the main process (RANK 0) writes state,
    # logs and metrics (a failure's traceback is still appended to the log by any process).
    is_main = int(os.environ.get("RANK", "0")) == 0
    reporter: Reporter = FileReporter(workdir) if is_main else NullReporter()
    pid = {"pid": os.getpid()} if os.getpid() == os.getpgrp() else {}

    def _cancel(signum: int, frame: Any) -> None:
        reporter.log("received SIGTERM: cancelling")
        if is_main:
            ws.catalog.update("job", job_id, state="cancelled", finished_at=time.time())
        os._exit(143)

    signal.signal(signal.SIGTERM, _cancel)
    if is_main:
        ws.catalog.update("job", job_id, state="running", error=None, running_at=time.time(), **pid)
    reporter.log(f"job {job_id}: {spec.algorithm} on {spec.base_model}, dataset {spec.dataset}")
    try:
        dataset = local_dataset(spec.dataset, workdir)
        metrics, artifact, fmt = fit(spec, dataset, workdir, reporter, resume)
        if not is_main:
            return 0
        write_model_card(artifact, spec, dataset, metrics)
        plot_metrics(workdir)
        if not local:
            ws.lake.upload(workdir, prefix)
        if spec.output:
            dest = Lake(spec.output)
            dest.upload(artifact, "artifact")
            reporter.log(f"artifact copied to {dest.url('artifact')}")
        rel = artifact.relative_to(workdir).as_posix()
        ws.catalog.update(
            "job",
            job_id,
            state="succeeded",
            finished_at=time.time(),
            metrics=metrics,
            artifact_key=f"{prefix}/{rel}",
            artifact_format=fmt,
        )
        reporter.log(f"job {job_id} succeeded; artifact at {ws.lake.url(f'{prefix}/{rel}')}")
        return 0
    except Exception as exc:  # recorded for `job show`; the traceback goes to the log
        reporter.log("FAILED: " + "".join(traceback.format_exception_only(type(exc), exc)).strip())
        with (workdir / "log.txt").open("a") as fh:
            fh.write(traceback.format_exc())
        if not local:
            ws.lake.upload(workdir / "log.txt", f"{prefix}/log.txt")
        if is_main:
            ws.catalog.update("job", job_id, state="failed", error=str(exc), finished_at=time.time())
        return 1
    finally:
        if not local:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--resume", action="store_true")
    a = parser.parse_args(argv)
    return run(a.workspace, a.lake, a.job_id, a.resume)


if __name__ == "__main__":
    sys.exit(main())
