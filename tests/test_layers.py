"""The package's import graph (function-level imports included; `if TYPE_CHECKING:` ones name types
only and never run) has no cycle, and no library
module imports the command line. The layer order itself is import-linter's contract
(pyproject.toml, `make lint`); this test keeps the cycle check in the suite."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles():
    graph = grimp.build_graph("aelab", cache_dir=None, exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_no_library_module_imports_the_command_line():
    graph = grimp.build_graph("aelab", cache_dir=None, exclude_type_checking_imports=True)
    importers = {m for m in graph.find_modules_that_directly_import("aelab.cli")} | {
        m for c in graph.find_children("aelab.cli") for m in graph.find_modules_that_directly_import(c)
    }
    assert {m for m in importers if not m.startswith("aelab.cli") and m != "aelab.__main__"} == set()
