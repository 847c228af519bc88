"""Compatibility fixes for the pinned stack on torch 2.13 (filled in by the foundation work)."""


def apply() -> None:
    """Apply every fix once; idempotent."""
