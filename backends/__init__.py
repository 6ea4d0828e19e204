"""Backends that turn the graph IR into something runnable or viewable (installed as resdsl.backends)."""
