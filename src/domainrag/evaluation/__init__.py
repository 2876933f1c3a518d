"""Measure domain accuracy: retrieval metrics (trec_eval via pytrec-eval) and answer metrics."""
