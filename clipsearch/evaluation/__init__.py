"""Evaluation: IR metrics, zero-shot classification, retrieval per search mode, sweeps, reports."""
