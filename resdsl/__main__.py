"""`python -m resdsl` runs the command line."""
from .cli import main

main(prog_name="resdsl")
