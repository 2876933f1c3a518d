"""The job worker's outputs besides training: the model card and the loss plot."""

from __future__ import annotations

import json
from pathlib import Path

from domainrag.data.raft import write_chat_jsonl
from domainrag.training.spec import SFTJobSpec
from domainrag.training.worker import plot_metrics, write_model_card


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
