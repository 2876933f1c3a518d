"""A LoRA adapter names its base model portably, so it loads on a machine with another home and cache.

"Machine A" trains from the zoo model converted in its cache; "machine B" has another HOME and
DOMAINRAG_CACHE (its own converted copy: the same files, hard-linked here to skip a second conversion)
and A's cache is gone. The adapter is registered and loaded on B through our loading code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from domainrag import zoo

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]
BASE = "smollm2-135m-instruct"


def _machine(root: Path, converted: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose domainrag cache holds the converted zoo model; the environment points at it."""
    cache = root / "home" / ".cache" / "domainrag"
    shutil.copytree(converted, cache / "base-models" / BASE, copy_function=os.link)
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.setenv("DOMAINRAG_CACHE", str(cache))
    return cache


def _train_adapter(base_path: str, out: Path) -> None:
    """A LoRA adapter with non-zero weights (a stand-in for an SFT run), saved as peft saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(out)


def test_adapter_trained_on_one_machine_loads_on_another(
    ws, smollm_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file

    from domainrag.serving.backends.transformers import TransformersGenerator
    from domainrag.serving.models import create_model

    cache_a = _machine(tmp_path / "a", smollm_path, monkeypatch)
    base_a = zoo.resolve_llm(BASE)
    assert base_a.startswith(str(cache_a))
    adapter = tmp_path / "adapter"
    _train_adapter(base_a, adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == base_a

    record = zoo.make_adapter_portable(adapter, BASE)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE  # the zoo name, not A's cache folder
    assert record == {"base_model": BASE, "weights_sha256": zoo.weights_digest(base_a)}
    assert str(tmp_path) not in (adapter / zoo.ADAPTER_BASE_FILE).read_text()
    old_style = tmp_path / "old-adapter"  # saved before this: still A's cache folder in its config
    shutil.copytree(adapter, old_style)
    (old_style / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base_a}))

    shutil.rmtree(tmp_path / "a")  # machine A is gone
    cache_b = _machine(tmp_path / "b", smollm_path, monkeypatch)
    assert create_model(ws, "tuned", source="path", path=adapter)["base_model"] == BASE
    assert create_model(ws, "old", source="path", path=old_style)["base_model"] == BASE
    base_b, adapter_b = ws.llm_path("tuned")
    assert base_b == str(cache_b / "base-models" / BASE)

    generator = TransformersGenerator(base_b, adapter_b, dtype="float32")  # PeftModel.from_pretrained, merged
    base_q = load_file(str(Path(base_b) / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"]
    merged_q = generator.model.model.layers[0].self_attn.q_proj.weight.detach()
    assert not torch.allclose(merged_q, base_q)  # the adapter's weights are in
    assert generator.model.config.num_hidden_layers == 30


def test_other_base_weights_are_named_in_a_warning(ws, smollm_path: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from domainrag.serving.models import create_model

    _machine(tmp_path / "m", smollm_path, monkeypatch)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": BASE}))
    (adapter / zoo.ADAPTER_BASE_FILE).write_text(json.dumps({"base_model": BASE, "weights_sha256": "0" * 64}))
    create_model(ws, "drifted", source="path", path=adapter)
    with pytest.warns(UserWarning, match=r"drifted.*sha256 000000000000"):
        ws.llm_path("drifted")
