"""Per-sentence grounding: cited and supported, cited but unsupported, uncited, and when it cannot be claimed."""

from __future__ import annotations

from domainrag.serving.grounding import grounding, sentence_support

PASSAGES = ["The DP-220 dosing pump delivers up to 12 litres per hour at 10 bar.",
            "Staff receive 28 days of paid holiday per year."]
RAN = {"ran": True, "answerable": True}


def test_each_sentence_is_checked_against_the_passage_it_cites() -> None:
    answer = ("The DP-220 delivers up to 12 litres per hour [1]. Staff receive 40 days of paid holiday on Mars [1]. "
              "It was designed in Norway. See also [7].")
    by_status = {s["status"]: s for s in sentence_support(answer, PASSAGES)}
    assert by_status["supported"]["citations"] == [1] and by_status["supported"]["support"] == 1.0
    assert by_status["unsupported"]["support"] < 0.6  # cites [1], which says nothing of holidays
    assert by_status["uncited"]["sentence"] == "It was designed in Norway."
    assert by_status["invalid-citation"]["citations"] == [7]


def test_an_answer_is_grounded_only_when_every_sentence_is_supported_and_the_gate_ran() -> None:
    good = "The DP-220 delivers up to 12 litres per hour at 10 bar [1]. Staff receive 28 days of paid holiday [2]."
    assert grounding(good, PASSAGES, gate=RAN)["grounded"] is True
    no_gate = grounding(good, PASSAGES, gate=None)
    assert no_gate["grounded"] is None and "gate did not run" in no_gate["reason"]
    assert grounding(good, PASSAGES, gate={"ran": False})["grounded"] is None
    bad = grounding(good + " It also makes coffee.", PASSAGES, gate=RAN)
    assert bad["grounded"] is False and bad["flagged"] == 1


def test_an_abstention_is_not_called_grounded() -> None:
    g = grounding("The knowledge base does not contain this information.", PASSAGES, gate=RAN)
    assert g["abstained"] and g["grounded"] is None and g["sentences"] == []
