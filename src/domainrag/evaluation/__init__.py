"""Measure domain accuracy: retrieval metrics (trec_eval via pytrec-eval) and answer metrics.

* :mod:`.spec` — what to evaluate (typed specifications) and the pass/fail gate on metrics.
* :mod:`.retrieval` — trec_eval metrics over qrels and runs, ``run_from_hits``.
* :mod:`.beir` — BEIR folders and the project's question files (dirty rows counted, not fatal).
* :mod:`.retrieval_eval` — score retrieval configurations (optionally ingesting the corpus first).
* :mod:`.answers` — per-answer scores (EM, F1, key fact, yes/no/maybe, refusal, citations, lexical support).
* :mod:`.judge` — faithfulness, sentence by sentence, by a catalogue LLM (in-process: yes/no logits) or an
  OpenAI-compatible endpoint (reply text); the prompt is stored in every report.
* :mod:`.answer_eval` — ask apps the questions and score the answers; :mod:`.app_eval` does it for
  catalogued apps; :mod:`.closed_book` is an app's model without retrieval.
* :mod:`.result` — the typed result every evaluation returns, saved as JSON; :mod:`.report` renders it as HTML.
"""
