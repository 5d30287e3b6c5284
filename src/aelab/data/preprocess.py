"""One preprocessor: how raw samples become model input, and back.

Used by data loading (``data.scale``), ``Run.prepare_input`` (`aelab encode`, `aelab score`),
``AnomalyDetector``, ``AutoencoderTransformer`` and export, so the rule is written once::

    p = Preprocessor("standard").fit(x_train)
    x = p.transform(x_raw)              # float32 (float64 with dtype=np.float64)
    x_raw = p.inverse_transform(x)      # a fitted scale only
    p.save(run_dir / "scaler.safetensors");  p = Preprocessor.load(...)

Scales:
  auto      uint8 / 255; floats kept, and refused outside [0, 1] when ``unit_range`` (the model's
            declared capability: ``models.needs_unit_range``)
  none      uint8 as their values; floats as given
  minmax    uint8 / 255; floats rescaled by the global min and max of the array given
            (``per_feature=True``: by each feature's min and max, fitted once)
  standard  (x - mean) / std per value of a flattened sample, fitted once (std 0 counts as 1)

Only fitted scales have state; ``save`` writes it with safetensors (never pickle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import to_unit_float

SCALES = ("auto", "none", "minmax", "standard")


def check_finite(x: np.ndarray, where: str) -> np.ndarray:
    """``x`` itself, or one line naming how many values are NaN or inf and the first sample holding one."""
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"{where}: holds NaN or inf ({int(bad.sum())} values, first in sample {i}); clean the data first"
        )
    return x


class Preprocessor:
    def __init__(
        self,
        scale: str = "auto",
        *,
        unit_range: bool = True,
        per_feature: bool = False,
        eps: float = 1e-8,
        dtype: type = np.float32,
    ):
        if scale not in SCALES:
            raise DataError(f"scale: must be one of {', '.join(SCALES)}; got '{scale}'")
        self.scale, self.unit_range, self.per_feature, self.eps, self.dtype = scale, unit_range, per_feature, eps, dtype
        self.offset: np.ndarray | None = None  # fitted: x -> (x - offset) / span
        self.span: np.ndarray | None = None

    @property
    def fitted_scale(self) -> bool:
        """Whether this scale learns from data (standard, per-feature minmax)."""
        return self.scale == "standard" or (self.scale in ("minmax", "none") and self.per_feature)

    # -- fit / transform -----------------------------------------------------------
    def fit(self, x: np.ndarray, where: str = "X") -> Preprocessor:
        if self.fitted_scale:
            xf = self._as_float(x, where)
            if self.scale == "standard":
                offset, span = xf.mean(axis=0), xf.std(axis=0)
            elif self.scale == "none":
                offset, span = np.zeros(xf.shape[1:]), np.ones(xf.shape[1:])
            else:
                offset, span = xf.min(axis=0), xf.max(axis=0) - xf.min(axis=0)
            self.offset = offset.astype(self.dtype)
            self.span = np.where(span > self.eps, span, 1.0).astype(self.dtype)  # constant features stay constant
        return self

    def transform(self, x: np.ndarray, where: str = "X") -> np.ndarray:
        if self.fitted_scale:
            if self.offset is None or self.span is None:
                raise DataError(f"{where}: the {self.scale} preprocessor is not fitted")
            xf = self._as_float(x, where)
            if xf.shape[1:] != self.offset.shape and xf[:1].size == self.offset.size:
                xf = xf.reshape(len(xf), *self.offset.shape)  # flattened (or not) as the fitted samples were
            return ((xf - self.offset) / self.span).astype(self.dtype, copy=False)
        return to_unit_float(np.asarray(x), where, self.scale, self.unit_range).astype(self.dtype, copy=False)

    def fit_transform(self, x: np.ndarray, where: str = "X") -> np.ndarray:
        return self.fit(x, where).transform(x, where)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        """Back to the raw feature space (fitted scales; the others return ``x`` unchanged)."""
        if self.offset is None or self.span is None:
            return np.asarray(x)
        return np.asarray(x) * self.span + self.offset

    def _as_float(self, x: np.ndarray, where: str) -> np.ndarray:
        """``x`` as floats of ``dtype`` (uint8 as their values), NaN and inf refused."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise DataError(f"{where}: dtype {x.dtype} is not numeric")
        return check_finite(x.astype(self.dtype, copy=False), where)

    # -- what a run keeps ------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray] | None:
        """The fitted arrays as a run keeps them: {"mean", "std"} for standard; None when nothing was fitted."""
        if self.offset is None or self.span is None:
            return None
        if self.scale == "standard":
            return {"mean": self.offset, "std": self.span}
        return {"min": self.offset, "span": self.span}

    def save(self, path: str | Path) -> None:
        import torch

        from .._io import save_safetensors

        st = self.state()
        if st is None:
            raise DataError(f"{path}: a '{self.scale}' preprocessor has nothing fitted to save")
        save_safetensors(
            Path(path),
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in st.items()},
            metadata={"scale": self.scale},
        )

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray] | None, scale: str = "auto", unit_range: bool = True
    ) -> Preprocessor:
        """The preprocessor a run recorded: its fitted arrays (``state``), else its ``data.scale``."""
        if state is not None and "mean" in state:
            p = cls("standard", unit_range=False)
            p.offset, p.span = np.asarray(state["mean"]), np.asarray(state["std"])
            return p
        if state is not None and "min" in state:
            p = cls("minmax", per_feature=True)
            p.offset, p.span = np.asarray(state["min"]), np.asarray(state["span"])
            return p
        return cls(scale if scale != "standard" else "auto", unit_range=unit_range)

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        from safetensors.torch import load_file

        return cls.from_state({k: v.numpy() for k, v in load_file(Path(path)).items()})

    def describe(self) -> dict:
        """What a program outside aelab must do to raw data (export.json)."""
        st = self.state()
        if self.scale == "standard" and st is not None:
            return {
                "kind": "standard",
                "formula": "(x - mean) / std, per feature, on flattened samples",
                "mean": np.asarray(st["mean"]).ravel().tolist(),
                "std": np.asarray(st["std"]).ravel().tolist(),
            }
        return {"kind": "unit", "formula": "uint8 images / 255 (float32 in [0, 1])"}
