"""Naive loop references that the vectorised ops are compared with (no torch, no scipy)."""
