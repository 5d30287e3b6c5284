"""`python -m aelab` (and `torchrun -m aelab`) run the CLI."""

from .cli import program

raise SystemExit(program())
