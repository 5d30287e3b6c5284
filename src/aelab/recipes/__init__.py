"""Built-in recipes: the seed experiments as YAML configs shipped in the package.

``aelab train NAME`` runs one; ``aelab recipes`` lists them with their descriptions.
"""
from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).parent


def list_recipes() -> dict[str, str]:
    """name -> one-line description, sorted by name."""
    out = {}
    for f in sorted(HERE.glob("*.yaml")):
        d = yaml.safe_load(f.read_text()) or {}
        out[f.stem] = str(d.get("description", "")).strip()
    return out


def recipe_path(name: str) -> Path | None:
    p = HERE / f"{name}.yaml"
    return p if p.is_file() else None
