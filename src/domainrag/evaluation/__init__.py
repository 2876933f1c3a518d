"""Measure domain accuracy: retrieval metrics (trec_eval via pytrec-eval) and answer metrics.

* :mod:`.retrieval` — ``evaluate_run`` / ``evaluate_run_per_query`` over qrels and runs, ``run_from_hits``.
* :mod:`.beir` — BEIR folders and the project's question files (dirty rows counted, not fatal).
* :mod:`.answers` — per-answer scores (EM, F1, key fact, yes/no/maybe, refusal, citations, lexical support).
* :mod:`.judge` — faithfulness, sentence by sentence, by a catalogue LLM (in-process: yes/no logits) or an
  OpenAI-compatible endpoint (reply text); the prompt is stored in every report.
* :mod:`.closed_book` — an app's model without retrieval (``eval answers --no-retrieval``).
* :mod:`.runner` — ``run_retrieval_eval`` (configs, ``--ingest``), ``score_retrievers``, ``run_answer_eval``,
  thresholds; all return one JSON-able result layout.
* :mod:`.report` — that result as a self-contained HTML page.
"""
