"""PubMedQA yes/no/maybe accuracy of the LLM with context: base vs SFT vs SFT on RAG-aware (RAFT) data.

Data: the expert-labelled PubMedQA set (``ori_pqal.json``); the official 500 test ids
(``test_ground_truth.json``) are the test split, the other 500 the training split. Retrieval on
PubMedQA is near-perfect (hybrid nDCG@10 0.985, see the README), so every model reads the question's
own abstract (its ``CONTEXTS`` joined; the conclusion, ``LONG_ANSWER``, is never shown) as the one
retrieved passage, in the serving layout (:func:`domainrag.data.prompts.build_messages`, which
cuts a passage at 1,200 characters).

Scoring is constrained decoding: after the chat prompt and the assistant prefix ``Answer:``, the
label is whichever of `` yes`` / `` no`` / `` maybe`` gets the highest next-token logit. One
forward per question, no sampling, no parsing.

Variants (LoRA through :func:`domainrag.training.sft.run_sft`, same hyper-parameters):

* ``base``: the untrained model.
* ``sft``: trained on "question + own abstract → ``Answer: <label>.``" (``--conclusion`` appends the
  abstract's conclusion, ``LONG_ANSWER``, to the target).
* ``raft``: :func:`build_rag_sft_examples` — the abstract among ``--distractors`` other training
  abstracts, the answer citing it (``[k]``), and with probability ``--p-withhold`` the abstract
  withheld and the target the explicit not-in-context answer.
* ``probe`` (a diagnostic, not a product feature): the *frozen* base model's hidden state after
  ``Answer:`` at one of ``--probe-layers``, and a logistic-regression head fitted on every training
  question (``--n-train`` + ``--n-calib``; layer and regularisation chosen by 5-fold
  cross-validation on those questions, never on the test split). This
  is BioBERT's protocol (a classifier head on the encoder), and it bounds what the model's own
  representation of the question + abstract says about the answer.
* ``base-gguf``: a GGUF reader run by llama.cpp (``--reader``, a zoo name such as
  ``qwen2.5-coder-1.5b-instruct`` or a ``.gguf`` path, resolved by
  :func:`domainrag.serving.backends.gguf.resolve_gguf`), untrained. Same prompt, rendered with the GGUF's
  own chat template as the project's llama.cpp backend does, and the same constrained scoring, read
  from llama.cpp's logits of the last prompt token. No LoRA: training a 1.5B model does not fit a
  2-core CPU's time budget.

    nice .venv/bin/python benchmarks/bench_pubmedqa_sft.py --n-train 200 --n-test 150 \
        --out benchmarks/results/pubmedqa_sft.json
    nice .venv/bin/python benchmarks/bench_pubmedqa_sft.py --variants base-gguf \\
        --reader qwen2.5-coder-1.5b-instruct --n-test 200 --threads 2 \\
        --out benchmarks/results/pubmedqa_qwen15_base.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _machine import lscpu, version

HERE = Path(__file__).resolve().parent
LABELS = ("yes", "no", "maybe")
INSTRUCTION = "Answer yes, no or maybe, then give the conclusion."
ANSWER_PREFIX = "Answer:"


def load_split(data_dir: Path) -> tuple[dict[str, Any], list[str], list[str]]:
    """(entries, training ids, test ids): the official 500/500 split, both in file order."""
    entries = json.loads((data_dir / "pubmedqa" / "ori_pqal.json").read_text())
    test = json.loads((data_dir / "pubmedqa" / "test_ground_truth.json").read_text())
    return entries, [p for p in entries if p not in test], [p for p in entries if p in test]


def abstract(entry: dict[str, Any]) -> str:
    return " ".join(entry["CONTEXTS"])


PASSAGES = {"layout": "joined"}  # set from --passages in main()


def prompt_messages(entry: dict[str, Any], pid: str) -> list[dict[str, str]]:
    """The evaluation prompt: the question's own abstract as the retrieved context.

    ``joined`` (the first runs): the whole abstract as one passage, which the serving layout cuts at
    1,200 characters (68 % of abstracts are longer; the cut drops their RESULTS). ``split``: each
    ``CONTEXTS`` section as its own passage, as a passage-level index returns them, nothing cut.
    """
    from domainrag.data.prompts import ContextPassage, build_messages

    if PASSAGES["layout"] == "split":
        passages = [ContextPassage(c, source=f"{pid}#{i + 1}") for i, c in enumerate(entry["CONTEXTS"])]
    else:
        passages = [ContextPassage(abstract(entry), source=pid)]
    return build_messages(f"{entry['QUESTION']} {INSTRUCTION}", passages)


def target(entry: dict[str, Any], conclusion: bool) -> str:
    """The assistant turn: the label first (what is scored), optionally followed by the conclusion."""
    text = f"{ANSWER_PREFIX} {entry['final_decision']}."
    return f"{text} {entry['LONG_ANSWER'].strip()}" if conclusion else text


def write_sft_data(entries: dict[str, Any], ids: list[str], path: Path, conclusion: bool) -> int:
    from domainrag.data.raft import write_chat_jsonl

    examples = [
        [*prompt_messages(entries[p], p), {"role": "assistant", "content": target(entries[p], conclusion)}] for p in ids
    ]
    write_chat_jsonl(examples, path)
    return len(examples)


def write_raft_data(
    entries: dict[str, Any],
    ids: list[str],
    path: Path,
    distractors: int,
    p_withhold: float,
    seed: int,
    conclusion: bool,
) -> dict[str, int]:
    from domainrag.data.prompts import NOT_FOUND_ANSWER
    from domainrag.data.raft import build_rag_sft_examples, write_chat_jsonl

    qa = [
        {
            "question": f"{entries[p]['QUESTION']} {INSTRUCTION}",
            "answer": target(entries[p], conclusion),
            "doc": p,
            "evidence": abstract(entries[p]),
        }
        for p in ids
    ]
    chunks = {p: [abstract(entries[p])] for p in ids}
    examples = build_rag_sft_examples(qa, chunks, n_distractors=distractors, p_withhold=p_withhold, seed=seed)
    write_chat_jsonl(examples, path)
    return {"examples": len(examples), "withheld": sum(e[-1]["content"] == NOT_FOUND_ANSWER for e in examples)}


def train(base: str, data: Path, out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """LoRA SFT with the benchmark's hyper-parameters; returns the run's summary."""
    from domainrag.training.reporting import MemoryReporter
    from domainrag.training.sft import SFTArgs, run_sft

    args = SFTArgs(
        base_model=base,
        dataset=data,
        output_dir=out,
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        lora_r=a.lora_r,
        lora_alpha=2 * a.lora_r,
        lora_layers=a.lora_layers,
        max_seq_len=a.max_seq_len,
        eval_fraction=0.05,
        seed=a.seed,
        packing=a.packing,
    )
    result = run_sft(args, MemoryReporter(echo=True))
    return {
        k: getattr(result, k)
        for k in (
            "steps",
            "n_train",
            "n_eval",
            "train_loss_first",
            "train_loss_last",
            "eval_loss_before",
            "eval_loss_after",
            "tokens_per_s",
            "seconds",
        )
    } | {"adapter_dir": str(result.adapter_dir)}


def label_token_ids(tokenizer: Any) -> list[int]:
    """First token of `` yes`` / `` no`` / `` maybe`` (each is one token in SmolLM2's and Qwen's vocabularies)."""
    ids = [tokenizer(" " + label, add_special_tokens=False)["input_ids"][0] for label in LABELS]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"labels share a first token: {ids}")
    return ids


def answer_inputs(tokenizer: Any, entry: dict[str, Any], pid: str) -> Any:
    """Token ids of the chat prompt followed by the assistant prefix ``Answer:``."""
    text = tokenizer.apply_chat_template(prompt_messages(entry, pid), tokenize=False, add_generation_prompt=True)
    return tokenizer(text + ANSWER_PREFIX, add_special_tokens=False, return_tensors="pt")["input_ids"]


def label_logits(model: Any, tokenizer: Any, entries: dict[str, Any], ids: list[str]) -> dict[str, list[float]]:
    """Per question, the next-token logits of `` yes`` / `` no`` / `` maybe`` after ``Answer:`` (one forward each)."""
    import torch

    cand = label_token_ids(tokenizer)
    out: dict[str, list[float]] = {}
    with torch.inference_mode():
        for p in ids:
            logits = model(input_ids=answer_inputs(tokenizer, entries[p], p), logits_to_keep=1).logits[0, -1]
            out[p] = [float(x) for x in logits[cand].float()]
    return out


def hidden_states(model: Any, tokenizer: Any, entries: dict[str, Any], ids: list[str],
                  layers: list[int]) -> dict[int, Any]:
    """Per layer, the hidden states at the last prompt token (``Answer:``) of every question, as a matrix."""
    import numpy as np
    import torch

    rows: dict[int, list[Any]] = {k: [] for k in layers}
    with torch.inference_mode():
        for p in ids:
            out = model(input_ids=answer_inputs(tokenizer, entries[p], p), output_hidden_states=True, logits_to_keep=1)
            for k in layers:
                rows[k].append(out.hidden_states[k][0, -1].float().numpy())
    return {k: np.stack(v) for k, v in rows.items()}


def probe(model: Any, tokenizer: Any, entries: dict[str, Any], fit_ids: list[str], test_ids: list[str],
          layers: list[int], seed: int) -> dict[str, Any]:
    """Logistic-regression head on frozen hidden states: layer, C and class weighting by 5-fold CV on ``fit_ids``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    x_fit = hidden_states(model, tokenizer, entries, fit_ids, layers)
    x_test = hidden_states(model, tokenizer, entries, test_ids, layers)
    y_fit = np.array([LABELS.index(entries[p]["final_decision"]) for p in fit_ids])
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)

    def head(c: float, weight: str | None) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=weight, max_iter=3000))

    grid = [(k, c, w) for k in layers for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0) for w in (None, "balanced")]
    cv = {g: float(cross_val_score(head(g[1], g[2]), x_fit[g[0]], y_fit, cv=folds).mean()) for g in grid}
    layer, c, weight = max(grid, key=lambda g: cv[g])
    proba = head(c, weight).fit(x_fit[layer], y_fit).predict_log_proba(x_test[layer])
    logits = {p: [float(v) for v in row] for p, row in zip(test_ids, proba, strict=True)}
    seconds = time.perf_counter() - t0
    return score(logits, entries) | {
        "layer": layer, "fit_questions": len(fit_ids), "C": c, "class_weight": weight,
        "cv_accuracy": round(cv[(layer, c, weight)], 4), "layers_tried": layers,
        "cv_accuracy_per_layer": {k: round(max(v for g, v in cv.items() if g[0] == k), 4) for k in layers},
        "seconds": round(seconds, 1),
    }


def fit_label_bias(logits: dict[str, list[float]], gold: dict[str, str], step: float = 0.05,
                   span: float = 8.0) -> list[float]:
    """Per-label offsets (``yes`` fixed at 0) that maximise accuracy on a calibration split.

    The label prior of a small model is far off (base SmolLM2 says "no" to 105 of 120 questions, the
    fine-tuned ones "yes" to all), and an offset per label is the cheapest correction that keeps the
    model's ranking of questions: "contextual calibration" (Zhao et al., 2021) fitted on held-out data.
    Fitted on training questions that were not trained on, never on the test split; ties go to the
    smallest offsets.
    """
    import numpy as np

    ids = sorted(logits)
    x = np.array([logits[p] for p in ids])
    y = np.array([LABELS.index(gold[p]) for p in ids])
    grid = np.arange(-span, span + step / 2, step)
    best = (-1.0, 0.0, [0.0, 0.0, 0.0])
    for b_no in grid:
        for b_maybe in grid:
            acc = float(((x + np.array([0.0, b_no, b_maybe])).argmax(1) == y).mean())
            size = abs(b_no) + abs(b_maybe)
            if acc > best[0] or (acc == best[0] and size < best[1]):
                best = (acc, size, [0.0, float(b_no), float(b_maybe)])
    return best[2]


def score(logits: dict[str, list[float]], entries: dict[str, Any], bias: list[float] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 and confusion counts of argmax(logits + bias)."""
    bias = bias or [0.0, 0.0, 0.0]
    ids = sorted(logits)
    preds = {p: LABELS[max(range(3), key=lambda i: logits[p][i] + bias[i])] for p in ids}
    gold = {p: entries[p]["final_decision"] for p in ids}
    acc = sum(preds[p] == gold[p] for p in ids) / len(ids)
    f1s = []
    for lab in LABELS:
        tp = sum(preds[p] == lab and gold[p] == lab for p in ids)
        fp = sum(preds[p] == lab and gold[p] != lab for p in ids)
        fn = sum(preds[p] != lab and gold[p] == lab for p in ids)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {
        "accuracy": round(acc, 4),
        "macro_f1": round(sum(f1s) / len(f1s), 4),
        "predicted": dict(Counter(preds.values())),
        "confusion": {f"{g}->{pr}": n for (g, pr), n in sorted(Counter((gold[p], preds[p]) for p in ids).items())},
    }


def evaluate(model: Any, tokenizer: Any, entries: dict[str, Any], ids: list[str],
             calib_ids: list[str] | None = None) -> dict[str, Any]:
    """Constrained yes/no/maybe prediction per test question; with ``calib_ids``, also label-bias calibrated."""
    t0 = time.perf_counter()
    logits = label_logits(model, tokenizer, entries, ids)
    seconds = time.perf_counter() - t0
    result = score(logits, entries) | {"seconds": round(seconds, 1), "s_per_question": round(seconds / len(ids), 3)}
    if calib_ids:
        calib = label_logits(model, tokenizer, entries, calib_ids)
        bias = fit_label_bias(calib, {p: entries[p]["final_decision"] for p in calib_ids})
        result["calibrated"] = score(logits, entries, bias) | {
            "bias_yes_no_maybe": bias, "calibration_questions": len(calib_ids),
            "calibration_accuracy": score(calib, entries, bias)["accuracy"]}
    return result


class GgufReader:
    """A GGUF model in llama.cpp, scored like the transformers models: label logits after ``Answer:``.

    The prompt is rendered the way :class:`domainrag.serving.backends.llamacpp.LlamaCppGenerator` renders
    it (the GGUF's own chat template, tokenised with special tokens, no extra BOS). Only the last prompt
    token's logits are computed (``logits_all=False``); the prompt prefix shared with the previous
    question (system prompt, template) stays in the KV cache.
    """

    def __init__(self, spec: str, n_threads: int, n_ctx: int = 4096) -> None:
        from domainrag.serving.backends.gguf import resolve_gguf
        from domainrag.serving.backends.llamacpp import LlamaCppGenerator

        self.path = resolve_gguf(spec)
        self.gen = LlamaCppGenerator(self.path, n_ctx=n_ctx, n_threads=n_threads, name=spec)
        self.llm = self.gen.llm
        self.tokens = self.label_tokens()
        self.prompt_tokens = 0

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def label_tokens(self) -> list[int]:
        """`` yes`` / `` no`` / `` maybe`` as single tokens, and checked to be what follows ``Answer:`` when the
        label is written out (so the scored token is the one the model would emit)."""
        ids = []
        for label in LABELS:
            alone = self.llm.tokenize(f" {label}".encode(), add_bos=False)
            after = self.tokenize(f"x {ANSWER_PREFIX} {label}")
            if len(alone) != 1 or after[-1] != alone[0] or after[:-1] != self.tokenize(f"x {ANSWER_PREFIX}"):
                raise SystemExit(f"label {label!r} is not one token after {ANSWER_PREFIX!r}: {alone} / {after}")
            ids.append(alone[0])
        if len(set(ids)) != len(ids):
            raise SystemExit(f"labels share a token: {ids}")
        return ids

    def prompt(self, entry: dict[str, Any], pid: str) -> list[int]:
        text = self.gen._chat_formatter(messages=prompt_messages(entry, pid)).prompt
        return self.tokenize(text + ANSWER_PREFIX)

    def label_logits(self, entries: dict[str, Any], ids: list[str], log_every: int = 10) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for i, p in enumerate(ids, 1):
            tokens = self.prompt(entries[p], p)
            self.prompt_tokens += len(tokens)
            logits = self.gen.eval_tokens(tokens)  # the prefix shared with the previous question is kept
            out[p] = [float(logits[t]) for t in self.tokens]
            print(f"  {p} {entries[p]['final_decision']} {[round(x, 3) for x in out[p]]}", flush=True)  # salvageable
            if i % log_every == 0 or i == len(ids):
                el = time.perf_counter() - t0
                print(f"  {i}/{len(ids)} questions, {el / i:.2f} s each", flush=True)
        return out


def evaluate_gguf(reader: GgufReader, entries: dict[str, Any], ids: list[str],
                  calib_ids: list[str] | None = None) -> dict[str, Any]:
    """:func:`evaluate` for a llama.cpp reader; also keeps the raw label logits per test question."""
    t0 = time.perf_counter()
    logits = reader.label_logits(entries, ids)
    seconds = time.perf_counter() - t0
    result = score(logits, entries) | {
        "seconds": round(seconds, 1),
        "s_per_question": round(seconds / len(ids), 3),
        "prompt_tokens_mean": round(reader.prompt_tokens / len(ids), 1),
        "label_token_ids": dict(zip(LABELS, reader.tokens, strict=True)),
    }
    if calib_ids:
        calib = reader.label_logits(entries, calib_ids)
        bias = fit_label_bias(calib, {p: entries[p]["final_decision"] for p in calib_ids})
        result["calibrated"] = score(logits, entries, bias) | {
            "bias_yes_no_maybe": bias, "calibration_questions": len(calib_ids),
            "calibration_accuracy": score(calib, entries, bias)["accuracy"]}
    result["logits_yes_no_maybe"] = {p: [round(x, 4) for x in v] for p, v in sorted(logits.items())}
    return result


def load_model(base: str, adapter: str | None, dtype: str = "float32") -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.to(getattr(torch, dtype)).eval()  # merged in fp32, then cast


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--base-model", default="smollm2-135m-instruct")
    ap.add_argument("--n-train", type=int, default=500, help="training questions (first N of the 500, file order)")
    ap.add_argument("--n-test", type=int, default=500, help="test questions (seeded sample of the 500)")
    ap.add_argument("--n-calib", type=int, default=0,
                    help="training questions after the first --n-train (never trained on) to fit per-label logit "
                         "offsets on; the test split is then also scored calibrated")
    ap.add_argument("--eval-dtype", choices=("float32", "bfloat16"), default="float32",
                    help="dtype of the evaluated models (bfloat16: ~3x faster on CPUs with AVX512-BF16)")
    ap.add_argument("--variants", nargs="+", default=["base", "sft", "raft"],
                    choices=["base", "sft", "raft", "probe", "base-gguf"])
    ap.add_argument("--reader", default="qwen2.5-coder-1.5b-instruct",
                    help="GGUF reader of the base-gguf variant: a GGUF-packaged zoo LLM or a .gguf path (llama.cpp)")
    ap.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context of the base-gguf variant")
    ap.add_argument("--probe-layers", type=int, nargs="+", default=[12, 16, 20, 24],
                    help="hidden layers the probe variant may read (picked by cross-validation)")
    ap.add_argument(
        "--passages",
        choices=("joined", "split"),
        default="joined",
        help="abstract as one passage (cut at 1,200 chars) or one passage per CONTEXTS section (uncut)",
    )
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-layers", type=int, default=8, help="adapt the top N layers only (CPU budget)")
    ap.add_argument("--max-seq-len", type=int, default=768)
    ap.add_argument("--distractors", type=int, default=1)
    ap.add_argument("--p-withhold", type=float, default=0.1)
    ap.add_argument("--packing", action="store_true")
    ap.add_argument(
        "--conclusion", action="store_true", help="train on 'Answer: <label>. <conclusion>', not the label alone"
    )
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a busy 2-core box); llama.cpp threads for base-gguf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-pubmedqa-sft"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pubmedqa_sft.json")
    a = ap.parse_args(argv)
    PASSAGES["layout"] = a.passages
    if a.passages == "split" and "raft" in a.variants:
        ap.error("--passages split is built for the base and sft variants (RAFT examples use joined abstracts)")

    import torch
    import transformers
    from transformers import AutoTokenizer

    from domainrag.zoo import resolve_llm

    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    entries, train_ids, test_ids = load_split(a.data_dir)
    calib_ids = train_ids[a.n_train : a.n_train + a.n_calib]
    train_ids = train_ids[: a.n_train]
    if a.n_test < len(test_ids):
        test_ids = sorted(random.Random(a.seed).sample(test_ids, a.n_test))
    gold = Counter(entries[p]["final_decision"] for p in test_ids)
    hf_variants = [v for v in a.variants if v != "base-gguf"]
    base = resolve_llm(a.base_model) if hf_variants else None
    tokenizer = AutoTokenizer.from_pretrained(base) if hf_variants else None
    a.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    training: dict[str, Any] = {}
    data_info: dict[str, Any] = {}
    gguf_info: dict[str, Any] = {}
    for variant in a.variants:
        if variant == "base-gguf":
            reader = GgufReader(a.reader, n_threads=a.threads, n_ctx=a.n_ctx)
            gguf_info = {"reader": a.reader, "gguf": reader.path, "gguf_bytes": Path(reader.path).stat().st_size,
                         "n_ctx": a.n_ctx, "n_threads": a.threads,
                         "chat_template": "the GGUF's own (tokenizer.chat_template), as the llamacpp backend"}
            print(f"== evaluating {variant} ({a.reader}) on {len(test_ids)} test questions", flush=True)
            results[variant] = evaluate_gguf(reader, entries, test_ids, calib_ids)
            reader.gen.close()
            print(f"{variant}: { {k: v for k, v in results[variant].items() if k != 'logits_yes_no_maybe'} }",
                  flush=True)
            continue
        if variant == "probe":
            print(f"== probing layers {a.probe_layers} of the base model", flush=True)
            results[variant] = probe(load_model(base, None, a.eval_dtype), tokenizer, entries, train_ids + calib_ids,
                                     test_ids, a.probe_layers, a.seed)
            print(f"{variant}: {results[variant]}", flush=True)
            continue
        adapter = None
        if variant != "base":
            data = a.workdir / f"{variant}.jsonl"
            if variant == "sft":
                data_info[variant] = {"examples": write_sft_data(entries, train_ids, data, a.conclusion)}
            else:
                data_info[variant] = write_raft_data(
                    entries, train_ids, data, a.distractors, a.p_withhold, a.seed, a.conclusion
                )
            print(f"== training {variant} on {data_info[variant]}", flush=True)
            training[variant] = train(base, data, a.workdir / variant, a)
            adapter = training[variant]["adapter_dir"]
        print(f"== evaluating {variant} on {len(test_ids)} test questions", flush=True)
        results[variant] = evaluate(load_model(base, adapter, a.eval_dtype), tokenizer, entries, test_ids, calib_ids)
        print(f"{variant}: {results[variant]}", flush=True)

    report = {
        "benchmark": "pubmedqa_sft",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": a.threads,
            "load_at_start": round(load_at_start, 2),
            "platform": platform.platform(),
            **lscpu(),
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "llama_cpp_python": version("llama_cpp_python"),
            "python": platform.python_version(),
        },
        "setup": {
            "base_model": a.base_model if hf_variants else None,
            "gguf_reader": gguf_info or None,
            "n_train": len(train_ids),
            "n_test": len(test_ids),
            "test_labels": dict(gold),
            "majority_baseline": round(max(gold.values()) / len(test_ids), 4),
            "context": (
                "the question's own abstract (gold retrieval), each CONTEXTS section as its own passage, uncut"
                if a.passages == "split"
                else "the question's own abstract (gold retrieval), cut at 1,200 characters by format_context"
            ),
            "scoring": f"argmax of the next-token logits of ' yes'/' no'/' maybe' after '{ANSWER_PREFIX}'",
            "calibration": (f"per-label logit offsets fitted for accuracy on {len(calib_ids)} training questions "
                            "not trained on (results[variant].calibrated)") if calib_ids else None,
            "eval_dtype": a.eval_dtype,
            "hyperparameters": {
                k: getattr(a, k)
                for k in (
                    "epochs",
                    "batch_size",
                    "lr",
                    "lora_r",
                    "lora_layers",
                    "max_seq_len",
                    "distractors",
                    "p_withhold",
                    "packing",
                    "seed",
                )
            },
            "data": data_info,
        },
        "results": results,
        "training": training,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| variant | accuracy | macro-F1 | predicted yes/no/maybe |\n|---|---:|---:|---|")
    for v, r in results.items():
        for label, row in ((v, r), (f"{v}, calibrated", r.get("calibrated"))):
            if row:
                pred = "/".join(str(row["predicted"].get(lab, 0)) for lab in LABELS)
                print(f"| {label} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} | {pred} |")
    print(f"majority baseline {report['setup']['majority_baseline']:.3f}; written to {a.out}")


if __name__ == "__main__":
    main()
