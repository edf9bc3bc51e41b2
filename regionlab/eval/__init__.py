"""Evaluation harnesses (ShapesWorld, ReCLIP JSONL, mask datasets)."""
