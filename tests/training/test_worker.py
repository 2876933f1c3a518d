"""The job worker's outputs besides training: the model card and the loss plot."""

from __future__ import annotations

import json
from pathlib import Path

from domainrag.data.raft import write_chat_jsonl
from domainrag.training.spec import EmbeddingJobSpec, SFTJobSpec
from domainrag.training.worker import metric_series, metrics_figure, plot_metrics, write_model_card


def test_model_card_says_why_training_stopped(tmp_path: Path) -> None:
    chats = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(2)]
    data = write_chat_jsonl(chats, tmp_path / "chat.jsonl")
    spec = SFTJobSpec(name="sft", base_model="smollm2-135m-instruct", dataset=str(data),
                      hyperparameters={"max_steps": 4})
    detail = "early stopping at step 4: held-out loss did not improve"
    write_model_card(tmp_path, spec, data, {"stop_reason": "early_stopping", "stop_detail": detail})
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["stopped"] == {"reason": "early_stopping", "detail": detail}
    assert card["hyperparameters"] == {"max_steps": 4}  # what the user set, as stored in the spec
    assert card["dataset"]["bytes"] == data.stat().st_size and len(card["dataset"]["sha256"]) == 64
    assert f"- training stopped: {detail}" in (tmp_path / "README.md").read_text()


def test_loss_plot_only_with_metrics(tmp_path: Path) -> None:
    assert plot_metrics(tmp_path) is None
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "eval_loss": 1.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_metrics(tmp_path)
    assert out == tmp_path / "loss.png" and out.read_bytes().startswith(b"\x89PNG")


def _front_matter(readme: str) -> dict:
    import yaml

    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_model_card_has_hugging_face_front_matter_and_no_machine_paths(tmp_path: Path) -> None:
    """A card travels with its artifact: lake key for the dataset, job-relative metric paths, hub id as base."""
    lake = tmp_path / "lake"
    data = write_chat_jsonl([[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]],
                            lake / "raw" / "chats" / "chat.jsonl")
    workdir = lake / "jobs" / "sft-1"
    artifact = workdir / "output" / "adapter"
    artifact.mkdir(parents=True)
    spec = SFTJobSpec(name="sft", base_model="smollm2-135m-instruct", dataset=str(data))
    metrics = {"adapter_dir": str(artifact), "merged_dir": None, "elsewhere": "/opt/other/file.bin", "steps": 3}
    write_model_card(artifact, spec, data, metrics, lake_root=str(lake), workdir=workdir,
                     base_weights_sha256="ab" * 32)
    readme, card = (artifact / "README.md").read_text(), (artifact / "model_card.json").read_text()
    meta = _front_matter(readme)
    assert meta == {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "library_name": "peft",
                    "pipeline_tag": "text-generation",
                    "tags": ["domainrag", "sft", "lora", "domainrag-zoo:smollm2-135m-instruct"],
                    "license": "apache-2.0", "datasets": ["raw/chats/chat.jsonl"]}
    for text in (readme, card):
        assert str(tmp_path) not in text and "/opt/other" not in text
    parsed = json.loads(card)
    assert parsed["dataset"]["uri"] == "raw/chats/chat.jsonl" and parsed["base_model_weights_sha256"] == "ab" * 32
    assert parsed["metrics"]["adapter_dir"] == "output/adapter" and parsed["metrics"]["elsewhere"] == "file.bin"


def test_model_card_of_a_local_base_and_a_local_dataset_names_files_only(tmp_path: Path) -> None:
    base = tmp_path / "my-encoder"
    base.mkdir()
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q", "positive": "p"}\n')
    spec = EmbeddingJobSpec(name="emb", base_model=str(base), dataset=str(data))
    write_model_card(tmp_path, spec, data, {"dimension": 384})
    readme = (tmp_path / "README.md").read_text()
    meta = _front_matter(readme)
    assert "base_model" not in meta and "license" not in meta  # no hub id for a local folder
    assert meta["library_name"] == "sentence-transformers" and meta["datasets"] == ["pairs.jsonl"]
    assert str(tmp_path) not in readme + (tmp_path / "model_card.json").read_text()


def test_loss_plot_has_every_eval_step_labelled_axes_and_metrics_apart() -> None:
    rows = [{"step": s, "loss": 3.0 - s / 40, "learning_rate": 1e-4, "grad_norm": 1.0} for s in range(1, 61)]
    rows += [{"step": s, "eval_loss": 3.0 - s / 50} for s in (0, 20, 40, 60)]
    rows += [{"step": 60, "eval_loss": 1.75}]  # the best adapter restored at the end: that step's last value
    rows += [{"step": s, "eval_ndcg@10": 0.5 + s / 200, "eval_runtime": 12.0, "epoch": 1.0} for s in (20, 40)]
    rows += [{"step": 60, "train_loss": 2.2, "train_runtime": 80.0}]  # the trainer's summary
    losses, metrics = metric_series(rows)
    assert set(losses) == {"loss", "eval_loss"} and len(losses["loss"]) == 60
    assert losses["eval_loss"] == [(0, 3.0), (20, 2.6), (40, 2.2), (60, 1.75)]  # every evaluation, in step order
    assert metrics == {"eval_ndcg@10": [(20, 0.6), (40, 0.7)]}  # runtimes, epochs and rates are not metrics
    fig = metrics_figure(losses, metrics, "job")
    loss_ax, metric_ax = fig.axes
    assert (loss_ax.get_ylabel(), metric_ax.get_ylabel(), metric_ax.get_xlabel()) == ("loss", "held-out metric",
                                                                                      "training step")
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    assert list(lines["eval_loss"].get_xdata()) == [0, 20, 40, 60] and lines["eval_loss"].get_marker() == "o"
    assert lines["loss"].get_marker() in ("None", None, "")  # 60 training steps: a line, no markers
    assert [line.get_label() for line in metric_ax.get_lines()] == ["eval_ndcg@10"]
    only_loss = metrics_figure({"loss": [(1, 2.0), (2, 1.0)]}, {}, "job")
    assert len(only_loss.axes) == 1 and only_loss.axes[0].get_xlabel() == "training step"
