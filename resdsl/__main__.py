"""`python -m resdsl` runs the command line."""
from .cli import run

run()
