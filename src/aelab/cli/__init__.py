"""The `aelab` command line: one module per sub-command, registered in SUBCOMMANDS below.

A sub-command module holds ``NAME``, ``add_parser(subparsers) -> ArgumentParser``
(its help and arguments) and ``run(args) -> int`` (the work, by calling the
library; no logic of its own beyond argument handling). ``main`` is the one place
that turns errors into exit codes: every AelabError ends as one line on stderr and
its exit code (2 for bad input, 130 for an interrupted training). No library module
imports this package (import-linter holds that).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from types import ModuleType

from ..errors import AelabError, one_line
from . import (
    bench,
    data,
    decode,
    encode,
    explain_identity,
    explore,
    export,
    models,
    probe,
    recipes,
    report,
    sample,
    score,
    summary,
    sweep,
)
from . import eval as eval_cmd
from . import train as train_cmd

# the order of `aelab --help`
SUBCOMMANDS: list[ModuleType] = [
    train_cmd,
    eval_cmd,
    encode,
    decode,
    data,
    models,
    summary,
    report,
    explore,
    score,
    export,
    probe,
    bench,
    recipes,
    sweep,
    explain_identity,
    sample,
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aelab", description="Build, train, inspect, compare and ship autoencoders.")
    p.add_argument("--version", action="version", version=f"aelab {__import__('aelab').__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    for mod in SUBCOMMANDS:
        mod.add_parser(sub).set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.cmd:
        parser.print_help()
        return 2
    try:
        return a._run(a) or 0
    except AelabError as e:
        print(f"aelab {a.cmd}: error: {one_line(str(e))}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print(f"aelab {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        # a full disk or a read-only folder: say which file, keep the traceback out
        print(one_line(f"aelab {a.cmd}: error: {e.strerror or e} ({e.filename or ''})".rstrip(" ()")), file=sys.stderr)
        return 2


def program() -> int:
    """The `aelab` program (console script, `python -m aelab`): ``main()`` with the garbage collector told
    what lasts. The ~170,000 objects torch and aelab make on import live as long as the process, so they are
    frozen: no full collection walks them again, the one at the interpreter's exit included (0.35-0.45 s of
    every command; docs/PERFORMANCE.md). Not in ``main``, which tests and scripts call in their own process."""
    gc.freeze()
    code = main()
    gc.freeze()  # what the command made is left to the exit, which frees it without a last walk
    return code


__all__ = ["SUBCOMMANDS", "build_parser", "main", "program"]
