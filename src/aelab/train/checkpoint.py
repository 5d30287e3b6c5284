"""Checkpoints that survive a crash at any moment, with no pickle.

A checkpoint is two files tagged with the epoch (tensors in safetensors, the
rest in JSON), written atomically, then published by atomically replacing
``latest.json``. The per-batch losses travel as tensors: as JSON they grew with
every epoch and cost a 50-epoch run seconds of encoding (docs/PERFORMANCE.md). A crash before that leaves the previous checkpoint in charge;
older files are removed only after the pointer moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .._io import save_safetensors, write_json
from ..errors import RunError


@dataclass
class TrainState:
    epoch: int  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    batches: list[dict[str, Any]] = field(default_factory=list)  # one row per batch
    best_val: float | None = None
    bad_epochs: int = 0
    best_weights: dict[str, torch.Tensor] | None = None  # early stopping: the weights of the best epoch so far
    step: str = ""  # how the last session trained a batch (Loop.step_kind); summary.json's train_step, not saved


def save_checkpoint(
    folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, gen: torch.Generator, state: TrainState
) -> Path:
    """Writes the checkpoint of ``state.epoch``; on a write error (full disk, read-only folder) the
    previous checkpoint stays in charge and a RunError says so."""
    try:
        return _save(folder, model, opt, sched, gen, state)
    except OSError as e:
        tag = f"state-{state.epoch:05d}"
        for partial in folder.glob(f"{tag}.*"):  # written before the failure, never published
            partial.unlink(missing_ok=True)
        kept = _published_epoch(folder)
        kept_txt = f"the checkpoint of epoch {kept} is kept" if kept else "no earlier checkpoint exists"
        raise RunError(
            f"{e.filename or folder}: cannot write the checkpoint of epoch {state.epoch} "
            f"({e.strerror or e}); {kept_txt}"
        ) from None


def checkpoint_epoch(folder: Path) -> int:
    """The epoch the published checkpoint in ``folder`` holds (0: none)."""
    return _published_epoch(folder)


def _published_epoch(folder: Path) -> int:
    try:
        return int(json.loads((folder / "latest.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _save(
    folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, gen: torch.Generator, state: TrainState
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if state.best_weights is not None:
        tensors.update({f"best.{k}": v for k, v in state.best_weights.items()})
    osd = opt.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, st in osd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{name}"] = v
            else:
                opt_scalars.setdefault(str(idx), {})[name] = v
    tensors.update(_batch_columns(state.batches))
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = gen.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    tag = f"{state.epoch:05d}"
    save_safetensors(folder / f"state-{tag}.safetensors", tensors)
    meta = {
        "epoch": state.epoch,
        "param_groups": osd["param_groups"],
        "optim_scalars": opt_scalars,
        "scheduler": sched.state_dict() if sched is not None else None,
        "history": state.history,
        "best_val": state.best_val,
        "bad_epochs": state.bad_epochs,
    }
    write_json(folder / f"state-{tag}.json", meta)
    write_json(
        folder / "latest.json",
        {"epoch": state.epoch, "tensors": f"state-{tag}.safetensors", "meta": f"state-{tag}.json"},
    )
    for old in folder.glob("state-*"):
        if tag not in old.name:
            old.unlink(missing_ok=True)
    return folder / f"state-{tag}.safetensors"


# one tensor per column of TrainState.batches; float64 keeps every loss exactly as recorded
BATCH_COLUMNS = {"epoch": torch.int64, "batch": torch.int64, "step": torch.int64, "loss": torch.float64}


def _batch_columns(batches: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {f"batches.{c}": torch.tensor([b[c] for b in batches], dtype=dt) for c, dt in BATCH_COLUMNS.items()}


def _batch_rows(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> list[dict[str, Any]]:
    if "batches" in meta:  # written before the rows moved into the tensors file
        return meta["batches"]
    cols = {c: tensors[f"batches.{c}"].tolist() for c in BATCH_COLUMNS}
    return [dict(zip(cols, row)) for row in zip(*cols.values())]


def load_checkpoint(
    folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, gen: torch.Generator
) -> TrainState:
    pointer = folder / "latest.json"
    if not pointer.is_file():
        raise RunError(f"{folder}: no complete checkpoint to resume from")
    try:
        latest = json.loads(pointer.read_text())
        meta = json.loads((folder / latest["meta"]).read_text())
        tensors = load_file(folder / latest["tensors"])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        # a pickle swapped in for a state file lands here too: safetensors parses, it never unpickles
        raise RunError(
            f"{folder}: checkpoint unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "it was not written by aelab or is damaged"
        ) from None
    try:
        return _restore(folder, tensors, meta, model, opt, sched, gen)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RunError(f"{folder}: checkpoint does not fit this run ({str(e).splitlines()[0]})") from None


def _restore(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched,
    gen: torch.Generator,
) -> TrainState:
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    missing = set(model.state_dict()) ^ set(model_sd)
    if missing:
        raise RunError(f"{folder}: checkpoint does not match the model (tensor '{sorted(missing)[0]}')")
    for k, v in model.state_dict().items():
        if v.shape != model_sd[k].shape:
            raise RunError(
                f"{folder}: checkpoint tensor '{k}' has shape {tuple(model_sd[k].shape)} "
                f"but the model has {tuple(v.shape)}"
            )
    model.load_state_dict(model_sd)
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta["optim_scalars"].items():
        state.setdefault(int(idx), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if sched is not None and meta["scheduler"] is not None:
        sched.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.generator"])
    if torch.cuda.is_available():
        cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
    best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")} or None
    batches = _batch_rows(tensors, meta)
    return TrainState(meta["epoch"], meta["history"], batches, meta["best_val"], meta["bad_epochs"], best)
