"""`python -m aelab` (and `torchrun -m aelab`) run the CLI."""

from .cli import main

raise SystemExit(main())
