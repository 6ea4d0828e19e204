"""resdsl: a declarative architecture compiler for residual networks."""
__version__ = "0.1.0"
