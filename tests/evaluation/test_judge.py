"""The faithfulness judge: sentence splitting and reply parsing, and real judges.

Integration tests use real models and a real server, no mocks: the shipped SmolLM2-135M-Instruct
judging by yes/no logits in-process (from the workspace catalogue), and the same model behind
``domainrag serve``'s OpenAI-compatible ``/v1/chat/completions`` judged by its reply text.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from domainrag.evaluation.answer_eval import run_answer_eval
from domainrag.evaluation.judge import (
    JUDGE_PROMPT,
    JUDGE_SYSTEM,
    JudgeError,
    OpenAIJudge,
    SentenceJudge,
    judge_messages,
    parse_yes_no,
    split_claims,
)

from .test_answers import QUESTIONS, ScriptedApp

LLM = "smollm2-135m-instruct"
KEY_ENV = "DOMAINRAG_TEST_JUDGE_KEY"

# (passage, a sentence it clearly supports, a sentence it clearly contradicts)
PAIRS = [
    ("The DP-220 dosing pump delivers up to 12 litres per hour at 10 bar.",
     "The DP-220 delivers up to 12 litres per hour.", "The DP-220 delivers up to 90 litres per hour."),
    ("The CTL-400 controller carries a 36-month warranty on parts and labour.",
     "The CTL-400 has a 36-month warranty.", "The CTL-400 has no warranty."),
    ("Calibrate the pH probe with buffer solutions every month.",
     "The pH probe is calibrated monthly with buffer solutions.", "The pH probe never needs calibration."),
    ("Cooling towers lose water to evaporation; blowdown controls basin conductivity.",
     "Blowdown controls basin conductivity.", "Cooling towers gain water through evaporation."),
    ("The diaphragm should be replaced every 4000 operating hours.",
     "Replace the diaphragm every 4000 operating hours.", "The diaphragm should be replaced every 10 hours."),
    ("Staff receive 28 days of paid holiday per year.",
     "Staff get 28 days of paid holiday a year.", "Staff get 5 days of paid holiday a year."),
]


# -- units ------------------------------------------------------------------------------------------
def test_split_claims_drops_citations_and_empty_parts() -> None:
    assert split_claims("Prime it for 30 seconds [1]. Then start it [2]!\n[3]\n") == [
        "Prime it for 30 seconds.", "Then start it!"]
    assert split_claims("[1]") == []


@pytest.mark.parametrize(("reply", "supported"), [
    ("Yes", True), ("yes.", True), ("**No**, the context says 12.", False), ("Answer: NO", False),
    ("The statement is supported.", True), ("The statement is not supported.", False),
])
def test_parse_yes_no(reply: str, supported: bool) -> None:
    assert parse_yes_no(reply) is supported


def test_parse_yes_no_rejects_other_text() -> None:
    with pytest.raises(JudgeError, match="neither yes nor no"):
        parse_yes_no("The context talks about pumps.")


def test_judge_messages_hold_passages_and_statement() -> None:
    msgs = judge_messages("It has a warranty.", ["A" * 2000, "second\n\npart"])
    assert msgs[0] == {"role": "system", "content": JUDGE_SYSTEM}
    user = msgs[1]["content"]
    assert "[1] " + "A" * 1200 + "\n" in user and "A" * 1201 not in user  # passages are cut
    assert "[2] second part" in user and "Statement: It has a warranty." in user
    assert judge_messages("x", ["only one"])[1]["content"].startswith("Context: only one\nStatement: x\n")
    assert "(no passages)" in judge_messages("x", [])[1]["content"]


class _ByWord(SentenceJudge):
    """Supported iff the sentence's words all occur in the passages: exercises the sentence bookkeeping."""

    def check(self, statement: str, passages: Any) -> tuple[bool, dict[str, Any]]:
        text = " ".join(passages).lower()
        return all(w in text for w in statement.lower().strip(".").split()), {}

    def describe(self) -> dict[str, Any]:
        return {"configured": True, "prompt": JUDGE_PROMPT}


def test_sentence_bookkeeping() -> None:
    v = _ByWord().judge("q", "prime the pump [1]. bananas grow on mars.", ["Prime the pump first."])
    assert (v.claims, v.supported, v.score) == (2, 1, 0.5)
    assert v.unsupported == ["bananas grow on mars."]
    assert [s["supported"] for s in v.sentences] == [True, False]
    assert _ByWord().judge("q", "[1]", []).score == 1.0  # no claim, nothing unfaithful


def test_unreachable_judge_is_recorded_per_answer(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: a real connection failure
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAIJudge(f"http://127.0.0.1:{port}/v1", "m", api_key="sekret", timeout=5)
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    app = ScriptedApp({QUESTIONS[0]["question"]: "30 seconds [1]."})
    result = run_answer_eval({"app": lambda: app}, QUESTIONS[:1], dataset_files={"q.jsonl": qfile},
                             judge=judge).to_json()
    run = result["answers"]["runs"][0]
    assert run["metrics"]["faithfulness"] is None and run["judge_errors"] == 1
    assert "not measured (judge failed on 1 answer(s)" in run["status"]["faithfulness"]
    detail = result["answers"]["questions"][0]["results"]["app"]["score"]["faithfulness_detail"]
    assert "unreachable" in detail["error"]
    assert "sekret" not in json.dumps(result) and result["answers"]["judge"]["api_key_set"] is True


def test_bad_judge_url() -> None:
    with pytest.raises(JudgeError, match="not an http"):
        OpenAIJudge("localhost:8000", "m")


# -- real judges ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def judge_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from domainrag.workspace import Workspace

    return Workspace.open(tmp_path_factory.mktemp("judge") / "ws")


@pytest.mark.integration
def test_in_process_catalogue_judge_prefers_supported_sentences(judge_ws: Any) -> None:
    from domainrag.evaluation.judge import LogitJudge, judge_from_catalogue

    judge = judge_from_catalogue(judge_ws, LLM)
    assert isinstance(judge, LogitJudge) and judge.describe()["prompt"] == JUDGE_PROMPT
    p_sup = [judge.p_yes(sup, [passage]) for passage, sup, _ in PAIRS]
    p_con = [judge.p_yes(con, [passage]) for passage, _, con in PAIRS]
    wins = sum(s > c for s, c in zip(p_sup, p_con, strict=True))
    # A 135M judge is weak and biased towards "no", but it must still rank support above contradiction.
    assert wins >= 5, f"supported ranked above contradicted in only {wins}/6 pairs: {p_sup} vs {p_con}"
    assert sum(p_sup) / len(p_sup) > sum(p_con) / len(p_con)
    v = judge.judge("q", f"{PAIRS[0][1]} [1]", [PAIRS[0][0]])
    assert v.claims == 1 and 0.0 <= v.sentences[0]["p_yes"] <= 1.0


@pytest.mark.integration
def test_remote_judge_against_domainrag_serve(
    judge_ws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_api: Any
) -> None:
    from domainrag.evaluation.judge import TextJudge, judge_from_catalogue
    from domainrag.serving.api import create_api
    from domainrag.serving.keys import create_key
    from domainrag.serving.models import create_model

    key, _ = create_key(judge_ws, "*")
    with serve_api(create_api(judge_ws, require_keys=True)) as root:
        url = f"{root}/v1"
        with pytest.raises(JudgeError, match="HTTP 401"):
            OpenAIJudge(url, LLM, api_key="wrong-key").check("x", ["y"])
        judge = OpenAIJudge(url, LLM, api_key=key)
        passage, supported, contradicted = PAIRS[0]
        v = judge.judge("q", f"{supported} [1] {contradicted}", [passage])
        assert v.claims == 2 and all(s["reply"] for s in v.sentences)  # the server's text was parsed into verdicts

        qfile = tmp_path / "q.jsonl"
        qfile.write_text("x")
        app = ScriptedApp({QUESTIONS[0]["question"]: "Prime the dosing pump for 30 seconds [1]."})
        result = run_answer_eval({"app": lambda: app}, QUESTIONS[:1], dataset_files={"q.jsonl": qfile},
                                 judge=judge).to_json()

        # A catalogue LLM deployed on a remote endpoint is judged by its reply text, through its backend.
        monkeypatch.setenv(KEY_ENV, key)  # read by the backend per request; registration probes the server
        create_model(judge_ws, "remote-judge", source="remote",
                     endpoint={"type": "openai", "base_url": url, "model": LLM, "api_key_env": KEY_ENV})
        text_judge = judge_from_catalogue(judge_ws, "remote-judge")
        assert isinstance(text_judge, TextJudge)
        ok, detail = text_judge.check(supported, [passage])
        assert isinstance(ok, bool) and detail["reply"]
    run = result["answers"]["runs"][0]
    assert run["judge_errors"] == 0 and run["metrics"]["faithfulness"] in (0.0, 1.0)
    info = result["answers"]["judge"]
    assert info["url"] == f"{url}/chat/completions" and info["prompt"] == JUDGE_PROMPT
    assert key not in json.dumps(result)
