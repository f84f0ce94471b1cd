"""Evaluation: pure functions of tensors and lists; no pytest, no model library."""
