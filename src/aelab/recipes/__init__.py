"""Built-in recipes: the seed experiments as YAML configs shipped in the package.

``aelab train NAME`` runs one; ``aelab recipes`` lists them with their descriptions.

A recipe is either one Config file, or a *suite*: a file whose ``suite:`` key
lists other recipes (by name, or as ``{recipe: NAME, set: [KEY=VALUE, ...],
name: DIR}``), all of which ``aelab train SUITE`` runs and then compares.
Every ``*.yaml`` in this folder is a recipe, whoever added it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import Config
from ..errors import ConfigError

HERE = Path(__file__).parent


@dataclass
class SuiteMember:
    recipe: str  # the recipe it starts from
    name: str  # its run directory inside the suite's folder
    overrides: list[str] = field(default_factory=list)


def _read(path: Path) -> dict:
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(d).__name__}")
    return d


def list_recipes() -> dict[str, str]:
    """name -> one-line description, sorted by name."""
    out = {}
    for f in sorted(HERE.glob("*.yaml"), key=lambda f: f.stem):
        try:
            d = _read(f)
        except ConfigError:
            d = {"description": "(unreadable YAML)"}
        out[f.stem] = " ".join(str(d.get("description", "")).split())
    return out


def recipe_path(name: str) -> Path | None:
    p = HERE / f"{name}.yaml"
    return p if p.is_file() else None


def _suite_source(spec: str) -> tuple[Path, dict] | None:
    p = Path(spec)
    path = p if p.is_file() else recipe_path(spec)
    if path is None or path.suffix not in (".yaml", ".yml"):
        return None
    d = _read(path)
    return (path, d) if "suite" in d else None


def is_suite(spec: str) -> bool:
    """True when ``spec`` (a recipe name or YAML path) is a suite of recipes."""
    try:
        return _suite_source(spec) is not None
    except ConfigError:
        return False


def suite_members(spec: str) -> tuple[str, str, list[SuiteMember]]:
    """(suite name, description, members) of a suite, checked: every member names a recipe, names are unique."""
    src = _suite_source(spec)
    if src is None:
        raise ConfigError(f"'{spec}' is not a suite (a recipe or YAML file with a 'suite:' list)")
    path, d = src
    unknown = set(d) - {"name", "description", "suite"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown suite key(s) {', '.join(sorted(unknown))}; a suite has name, description, suite"
        )
    entries = d["suite"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'suite' must be a non-empty list of recipe names, got {entries!r}")
    members = []
    for i, e in enumerate(entries):
        if isinstance(e, str):
            e = {"recipe": e}
        if not isinstance(e, dict) or not isinstance(e.get("recipe"), str):
            raise ConfigError(
                f"{path}: suite[{i}] must be a recipe name or {{recipe: NAME, set: [KEY=VALUE], name: DIR}}, got {e!r}"
            )
        extra = set(e) - {"recipe", "set", "name"}
        if extra:
            raise ConfigError(
                f"{path}: suite[{i}] has unknown key(s) {', '.join(sorted(extra))}; allowed: recipe, set, name"
            )
        base = e["recipe"]
        base_path = Path(base) if Path(base).is_file() else recipe_path(base)
        if base_path is None:
            raise ConfigError(f"{path}: suite[{i}]: '{base}' is not a recipe (see `aelab recipes`)")
        sets = e.get("set") or []
        if isinstance(sets, str):
            sets = [sets]
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise ConfigError(f"{path}: suite[{i}].set must be a list of KEY=VALUE strings, got {sets!r}")
        members.append(
            SuiteMember(
                str(base_path) if base_path.parent != HERE else base, str(e.get("name") or Path(base).stem), list(sets)
            )
        )
    names = [m.name for m in members]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"{path}: suite members need distinct run names; {', '.join(dup)} repeats (give each a 'name:')"
        )
    return str(d.get("name") or path.stem), " ".join(str(d.get("description", "")).split()), members


def resolve_config(spec: str, overrides: list[str]) -> Config:
    """A YAML path, or the name of a built-in recipe, with ``--set`` overrides applied."""
    p = Path(spec)
    if p.is_file():
        return Config.from_yaml(p, overrides)
    rp = recipe_path(spec)
    if rp is not None:
        return Config.from_yaml(rp, overrides)
    raise ConfigError(f"'{spec}' is neither a config file nor a recipe name (see `aelab recipes`)")
