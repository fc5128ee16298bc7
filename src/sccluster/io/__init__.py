"""Placeholder (being written)."""
def read(*a, **k):
    raise NotImplementedError
