"""Fuzz harnesses for every parser that touches outside bytes (see fuzz/targets.py)."""
