"""model export: a LoRA-tuned SmolLM2-135M merged and written as a Hugging Face folder and as a GGUF.

Round trips: the HF folder loads in plain transformers and gives the in-process (base + adapter) model's
logits and greedy tokens; the GGUF loads in llama.cpp and gives the HF export's (f16 and q8_0); both can be
registered / deployed and served. The adapter has random non-zero weights on q, k and v, so a missing merge
or a wrong q/k row order for llama.cpp changes the numbers the tests compare.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from domainrag.serving.generator import GenerationConfig

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
MESSAGES = [{"role": "user", "content": "Name three colours of the rainbow."}]
GREEDY = GenerationConfig(temperature=0, max_new_tokens=8, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory):
    """A workspace with model 'tuned': a random-init LoRA adapter (q, k, v) on SmolLM2, registered from a folder."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from domainrag.serving.models import create_model
    from domainrag.workspace import Workspace
    from domainrag.zoo import make_adapter_portable, resolve_llm

    root = tmp_path_factory.mktemp("export")
    base = resolve_llm(BASE)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    model.save_pretrained(root / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "adapter")
    make_adapter_portable(root / "adapter", BASE)
    ws = Workspace.open(root / "ws")
    create_model(ws, "tuned", source="path", path=root / "adapter")
    return ws


@pytest.fixture(scope="module")
def exports(tuned, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from domainrag.serving.export import export_model

    root = tmp_path_factory.mktemp("exports")
    export_model(tuned, "tuned", "hf", out=root / "hf")
    export_model(tuned, "tuned", "gguf", out=root / "gguf", quantization="f16")
    return {"root": root, "hf": root / "hf", "gguf": root / "gguf" / "tuned.f16.gguf"}


@pytest.fixture(scope="module")
def in_process(tuned):
    """The model as domainrag serves it in-process: base weights + adapter merged at load, float32."""
    from domainrag.serving.backends.transformers import TransformersGenerator

    base, adapter = tuned.llm_path("tuned")
    return TransformersGenerator(base, adapter, name="tuned", dtype="float32")


@pytest.fixture(scope="module")
def hf_model(exports):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(exports["hf"], dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(exports["hf"]))


def _prompt(tokenizer) -> list[int]:
    return tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)["input_ids"]


def _greedy_hf(model, tokenizer, n: int = 8) -> list[int]:
    ids = torch.tensor([_prompt(tokenizer)])
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=n, do_sample=False)[0, ids.shape[1]:].tolist()


def _llama(path: Path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    return llama_cpp.Llama(str(path), n_ctx=256, logits_all=True, verbose=False)


def _greedy_llama(llm, prompt: list[int], n: int = 8) -> list[int]:
    out: list[int] = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
        if token == llm.token_eos() or len(out) == n:
            break
        out.append(token)
    return out


def test_hf_export_is_a_portable_transformers_folder(exports, tuned) -> None:
    folder = exports["hf"]
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("adapter_*")), "the adapter is merged, not shipped beside the weights"
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]  # what vLLM picks its model class by
    for path in folder.iterdir():
        if path.suffix in (".json", ".md", ".jinja"):
            text = path.read_text()
            for absolute in (str(exports["root"]), str(tuned.settings.workspace), "/.cache/"):
                assert absolute not in text, (path, absolute)
    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "transformers" and "merged-lora" in meta["tags"]


def test_hf_export_matches_the_in_process_adapter_model(hf_model, in_process) -> None:
    from transformers import AutoModelForCausalLM

    from domainrag.zoo import resolve_llm

    model, tokenizer = hf_model
    ids = torch.tensor([_prompt(tokenizer)])
    with torch.no_grad():
        exported = model(ids).logits[0, -1]
        served = in_process.model(ids).logits[0, -1]
        base = AutoModelForCausalLM.from_pretrained(resolve_llm(BASE), dtype=torch.float32)(ids).logits[0, -1]
    assert (exported - base).abs().max() > 0.1, "the adapter changed nothing: the comparison would prove nothing"
    torch.testing.assert_close(exported, served, atol=1e-4, rtol=1e-4)
    text = in_process.generate(MESSAGES, GREEDY)
    assert tokenizer.decode(_greedy_hf(model, tokenizer), skip_special_tokens=True).startswith(text)


def test_gguf_export_runs_in_llama_cpp_like_the_hf_export(exports, hf_model) -> None:
    model, tokenizer = hf_model
    llm = _llama(exports["gguf"])
    prompt = _prompt(tokenizer)
    assert llm.tokenize(tokenizer.decode(prompt).encode(), add_bos=False, special=True) == prompt
    llm.eval(prompt)
    gguf_logits = np.asarray(llm.scores[len(prompt) - 1])
    with torch.no_grad():
        hf_logits = model(torch.tensor([prompt])).logits[0, -1].numpy()
    assert np.abs(gguf_logits - hf_logits).max() < 0.25  # f16 weights: small rounding, not a different model
    llm.reset()
    expected = _greedy_hf(model, tokenizer, 6)
    assert _greedy_llama(llm, prompt, 6) == [t for t in expected if t != tokenizer.eos_token_id][:6]


def test_quantized_gguf_export_goes_through_llama_cpp_quantizer(tuned, exports, hf_model) -> None:
    import gguf

    from domainrag.serving.export import export_model

    out = exports["root"] / "q8"
    result = export_model(tuned, "tuned", "gguf", out=out, quantization="q8_0")
    path = out / result["files"][0]
    types = {t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert "Q8_0" in types and "F16" not in types
    assert not list(out.glob("*.partial*"))
    model, tokenizer = hf_model
    prompt = _prompt(tokenizer)
    assert _greedy_llama(_llama(path), prompt, 2) == _greedy_hf(model, tokenizer, 2)


def test_exports_can_be_registered_and_deployed(tuned, exports, in_process) -> None:
    from domainrag.serving.backends import deploy_model, generator_for
    from domainrag.serving.models import create_model

    expected = in_process.generate(MESSAGES, GREEDY)
    record = create_model(tuned, "tuned-hf", source="path", path=exports["hf"])
    assert (record["kind"], record["format"]) == ("llm", "hf")
    deploy_model(tuned, "tuned-hf", {"type": "transformers", "dtype": "float32"})  # as exact as the reference
    assert generator_for(tuned, "tuned-hf").generate(MESSAGES, GREEDY) == expected
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    deploy_model(tuned, "tuned", {"type": "llamacpp", "gguf": str(exports["gguf"]), "n_ctx": 256})
    assert generator_for(tuned, "tuned").generate(MESSAGES, GREEDY) == expected


def test_cli_export_and_its_errors(tuned, cli_for, tmp_path: Path) -> None:
    app = cli_for(tuned)
    runner = CliRunner()
    out = tmp_path / "hf"
    result = runner.invoke(app, ["model", "export", "tuned", "--format", "hf", "--out", str(out), "--dtype",
                                 "bfloat16"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text()).get("dtype") == "bfloat16"
    stamp = (out / "model.safetensors").stat().st_mtime_ns

    again = runner.invoke(app, ["model", "export", "tuned", "--format", "hf", "--out", str(out)])
    assert again.exit_code == 1 and "not empty" in again.output and "--force" in again.output
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp, "a refused export touches nothing"

    bad = runner.invoke(app, ["model", "export", "tuned", "--format", "onnx", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown export format 'onnx'" in bad.output
    bad_q = runner.invoke(app, ["model", "export", "tuned", "--format", "gguf", "--quantization", "q3",
                                "--out", str(tmp_path / "x")])
    assert bad_q.exit_code == 2 and "q8_0" in bad_q.output
    missing = runner.invoke(app, ["model", "export", "nope", "--format", "hf", "--out", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "nope" in missing.output and "Traceback" not in missing.output
    assert not (tmp_path / "x").exists()
    (tmp_path / "afile").write_text("x")
    under_file = runner.invoke(app, ["model", "export", "tuned", "--format", "hf",
                                     "--out", str(tmp_path / "afile/sub")])
    assert under_file.exit_code == 1 and "afile is a file, not a folder" in under_file.output
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root writes anywhere: the check has nothing to refuse there
        denied = runner.invoke(app, ["model", "export", "tuned", "--format", "hf", "--out", str(locked / "m")])
        assert denied.exit_code == 1 and "cannot write in" in denied.output and "locked" in denied.output

    to_lake = runner.invoke(app, ["model", "export", "tuned", "--format", "hf", "--lake-key", "exports/tuned",
                                  "--dtype", "bfloat16"])
    assert to_lake.exit_code == 0, to_lake.output
    assert {"exports/tuned/config.json", "exports/tuned/model.safetensors"} <= set(tuned.lake.list("exports/tuned/"))

    forced = runner.invoke(app, ["model", "export", "tuned", "--format", "hf", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "config.json").read_text()).get("dtype") == "float32"
    shutil.rmtree(out)
