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
from domainrag.storage.lake import Lake
from domainrag.training import embedding, reranker, sft
from domainrag.training.inputs import local_dataset
from domainrag.training.model_card import write_model_card
from domainrag.training.reporting import FileReporter, NullReporter, Reporter
from domainrag.training.spec import EmbeddingJobSpec, JobRecord, JobSpec, RerankerJobSpec, SFTJobSpec
from domainrag.workspace import Workspace

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

Series = dict[str, list[tuple[int, float]]]
# Trainer bookkeeping logged with the metrics (and train_loss, the run's mean): not plotted.
_NOT_PLOTTED = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "train_runtime",
                "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos", "epoch", "grad_norm",
                "learning_rate", "time", "step"}


def metric_series(rows: list[dict[str, Any]]) -> tuple[Series, Series]:
    """(losses, held-out metrics) from metrics.jsonl rows, each series as (step, value) points in step order:
    losses are the training loss and every eval loss (one point per evaluation; a step evaluated twice, as
    when the best adapter is restored at the end, keeps its last value), metrics the other eval_* values."""
    losses: dict[str, dict[int, float]] = {}
    metrics: dict[str, dict[int, float]] = {}
    for r in rows:
        step = r.get("step")
        if not isinstance(step, int):
            continue
        for key, value in r.items():
            if key in _NOT_PLOTTED or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == "loss" or key.endswith("_loss"):
                losses.setdefault(key, {})[step] = float(value)
            elif key.startswith("eval_"):
                metrics.setdefault(key, {})[step] = float(value)
    return ({k: sorted(v.items()) for k, v in sorted(losses.items())},
            {k: sorted(v.items()) for k, v in sorted(metrics.items())})


def metrics_figure(losses: Series, metrics: Series, title: str) -> Any:
    """Loss curves on one axis, held-out metrics (another scale) on an axis of their own below; every
    evaluation is a marker."""
    panels = [(series, label) for series, label in ((losses, "loss"), (metrics, "held-out metric")) if series]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (series, ylabel) in zip(axes[:, 0], panels, strict=True):
        for key, pts in series.items():
            dense = key == "loss" and len(pts) >= 50
            ax.plot(*zip(*pts, strict=True), label=key, marker=None if dense else "o", markersize=3)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def plot_metrics(folder: Path) -> Path | None:
    """loss.png from metrics.jsonl: training and eval losses, and any held-out metrics on their own axis."""
    path = folder / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    losses, metrics = metric_series(rows)
    if not losses and not metrics:
        return None
    fig = metrics_figure(losses, metrics, folder.name)
    out = folder / "loss.png"
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
        # A LoRA adapter names its base by the portable id (not this machine's cache folder), with its checksum.
        base = zoo.make_adapter_portable(artifact, spec.base_model) if fmt == "lora-adapter" else {}
        write_model_card(artifact, spec, dataset, metrics, lake_root=ws.lake.root, workdir=workdir,
                         base_weights_sha256=base.get("weights_sha256"))
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
