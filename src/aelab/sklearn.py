"""``AutoencoderTransformer``: an aelab dense autoencoder where scikit-learn puts PCA.

    from sklearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    pipe = make_pipeline(AutoencoderTransformer(code_dim=32, epochs=10), LogisticRegression())
    pipe.fit(X_train, y_train).score(X_test, y_test)

Training goes through the one entry point (``aelab.train(..., is_writer=False)``) on an in-memory
``Splits``; nothing is written to disk. ``transform`` and ``inverse_transform``
run in float64 so that results do not depend on how a caller batches rows.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .config import ACTIVATIONS, DEVICES, OPTIMIZERS, Config
from .errors import ConfigError

SCALES = ("minmax", "standard", "none")
LOSSES = ("mse", "bce")
_BATCH = 4096  # rows per forward pass in transform / inverse_transform


def _param_error(name: str, want: str, got: Any) -> ConfigError:
    return ConfigError(f"The '{name}' parameter of AutoencoderTransformer must be {want}. Got {got!r} instead.")


def _int(name: str, v: Any, low: int = 1) -> None:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
        raise _param_error(name, f"an int in the range [{low}, inf)", v)


def _among(name: str, v: Any, allowed: Sequence[str], none_ok: bool = False) -> None:
    if v is None and none_ok:
        return
    if v not in allowed:
        opts = "{" + ", ".join(repr(a) for a in allowed) + "}"
        raise _param_error(name, f"a str among {opts}" + (" or None" if none_ok else ""), v)


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Dense autoencoder as a scikit-learn transformer: ``transform`` gives codes.

    Parameters
    ----------
    code_dim : int, default=32
        Size of the code (the number of output features of ``transform``).
    hidden : sequence of int, default=()
        Encoder layer sizes before the code; the decoder mirrors them.
    epochs, batch_size : int
        Training length and minibatch size.
    lr : float or None, default=None
        Learning rate; None takes the optimizer's Keras default (adam: 1e-3).
    optimizer : {'adam', 'adamw', 'adadelta', 'sgd', 'rmsprop'}, default='adam'
    activation : str, default='relu'
        Hidden-layer activation, one of aelab's (relu, sigmoid, tanh, identity, leaky_relu, elu).
    code_activation : str or None, default=None
        Activation of the code layer; None: same as ``activation``. 'identity' gives a linear code.
    loss : {'mse', 'bce'}, default='mse'
        Reconstruction loss; 'bce' needs ``scale='minmax'`` (targets in [0, 1]).
    scale : {'minmax', 'standard', 'none'}, default='minmax'
        How features are scaled before training. 'minmax' maps each feature to [0, 1]
        on the training data and uses a sigmoid output; the others use a linear output.
    dropout, weight_decay : float, default=0.0
    tied : bool, default=False
        Decoder weights are the encoder's transposed.
    device : {'cpu', 'cuda', 'auto'}, default='cpu'
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and dropout.
    verbose : int, default=0
        Print aelab's per-epoch log lines when > 0.

    Attributes
    ----------
    model_ : aelab.models.Autoencoder
        The trained torch model (float32, eval mode).
    config_ : aelab.Config
        The aelab config the parameters were turned into.
    offset_, scale_ : ndarray of shape (n_features_in_,)
        ``X_scaled = (X - offset_) / scale_``.
    loss_curve_ : list of float
        Mean training loss per epoch.
    n_iter_ : int
        Epochs run.
    n_features_in_, feature_names_in_
        As in every scikit-learn estimator.
    """

    def __init__(
        self,
        code_dim: int = 32,
        *,
        hidden: Sequence[int] = (),
        epochs: int = 20,
        batch_size: int = 128,
        lr: float | None = None,
        optimizer: str = "adam",
        activation: str = "relu",
        code_activation: str | None = None,
        loss: str = "mse",
        scale: str = "minmax",
        dropout: float = 0.0,
        weight_decay: float = 0.0,
        tied: bool = False,
        device: str = "cpu",
        random_state=None,
        verbose: int = 0,
    ):
        self.code_dim = code_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.activation = activation
        self.code_activation = code_activation
        self.loss = loss
        self.scale = scale
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.tied = tied
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters -> aelab Config ------------------------------------------
    def _check_params(self) -> None:
        """Errors name the estimator's parameter, not the config key it becomes."""
        _int("code_dim", self.code_dim)
        _int("epochs", self.epochs)
        _int("batch_size", self.batch_size)
        hidden = self.hidden
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if not isinstance(hidden, (list, tuple)) or not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1 for h in hidden
        ):
            raise _param_error("hidden", "a sequence of ints >= 1 (e.g. (256, 64))", self.hidden)
        if self.lr is not None and (
            not isinstance(self.lr, numbers.Real) or isinstance(self.lr, bool) or not self.lr > 0
        ):
            raise _param_error("lr", "a float in the range (0, inf) or None", self.lr)
        _among("optimizer", self.optimizer, OPTIMIZERS)
        _among("activation", self.activation, ACTIVATIONS)
        _among("code_activation", self.code_activation, ACTIVATIONS, none_ok=True)
        _among("loss", self.loss, LOSSES)
        _among("scale", self.scale, SCALES)
        _among("device", self.device, DEVICES)
        if not isinstance(self.dropout, numbers.Real) or not 0.0 <= self.dropout < 1.0:
            raise _param_error("dropout", "a float in the range [0, 1)", self.dropout)
        if not isinstance(self.weight_decay, numbers.Real) or self.weight_decay < 0:
            raise _param_error("weight_decay", "a float in the range [0, inf)", self.weight_decay)
        if self.loss == "bce" and self.scale != "minmax":
            raise ConfigError(
                "The 'loss' parameter of AutoencoderTransformer is 'bce', which needs scale='minmax' "
                f"(targets in [0, 1]). Got scale={self.scale!r}; use loss='mse' instead."
            )

    def _config(self, seed: int) -> Config:
        hidden = [self.hidden] if isinstance(self.hidden, numbers.Integral) else list(self.hidden)
        return Config.from_dict(
            {
                "name": "sklearn",
                "description": "AutoencoderTransformer",
                "data": {"name": "npy", "path": "<in-memory array>", "scale": "none"},
                "model": {
                    "name": "dense",
                    "hidden": [int(h) for h in hidden],
                    "code_dim": int(self.code_dim),
                    "activation": self.activation,
                    "code_activation": self.code_activation,
                    "output_activation": "sigmoid" if self.scale == "minmax" else "identity",
                    "dropout": float(self.dropout),
                    "tied": bool(self.tied),
                },
                "train": {
                    "epochs": int(self.epochs),
                    "batch_size": int(self.batch_size),
                    "optimizer": self.optimizer,
                    "lr": None if self.lr is None else float(self.lr),
                    "weight_decay": float(self.weight_decay),
                    "loss": self.loss,
                    "seed": seed,
                    "device": self.device,
                },
            }
        )

    # -- fitting ----------------------------------------------------------------
    def fit(self, X, y=None):
        """Trains the autoencoder on ``X`` (n_samples, n_features); ``y`` is ignored."""
        from .data import Splits
        from .data.preprocess import Preprocessor
        from .runner import train

        self._check_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        # per feature, in float64; constant features stay constant instead of dividing by 0
        prep = Preprocessor(self.scale, per_feature=True, eps=1e-12, dtype=np.float64).fit(X)
        offset, span = prep.offset, prep.span
        Xs = np.ascontiguousarray(prep.transform(X), dtype=np.float32)

        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        cfg = self._config(seed)
        # The training set doubles as the 'test' split, so the per-epoch validation loss is the training reconstruction.
        splits = Splits("array", Xs, None, Xs, None)
        log = print if self.verbose else (lambda _msg: None)
        with torch.random.fork_rng(devices=[]):  # seed weights and dropout without touching the caller's torch RNG
            run = train(cfg, data=splits, log=log, is_writer=False)  # in memory: nothing is written
        model = run.model.eval()

        self.config_ = cfg
        self.model_ = model
        self.offset_ = offset
        self.scale_ = span
        self.loss_curve_ = [float(r["train_loss"]) for r in run.metrics]
        self.n_iter_ = int(run.summary["epochs"])
        return self

    @property
    def _n_features_out(self) -> int:
        return int(self.config_.model.code_dim)

    # -- inference -----------------------------------------------------------------
    def _float64_model(self):
        """A throw-away float64 copy, so that codes do not depend on batch size (sklearn checks subsets)."""
        return copy.deepcopy(self.model_).double().eval()

    @torch.no_grad()
    def _run(self, fn, A: np.ndarray) -> np.ndarray:
        dev = next(self.model_.parameters()).device
        out = [
            fn(torch.from_numpy(np.ascontiguousarray(A[i : i + _BATCH])).to(dev)).cpu().numpy()
            for i in range(0, len(A), _BATCH)
        ]
        return np.concatenate(out) if out else np.empty((0, 0))

    def transform(self, X):
        """Codes of ``X``: an array (n_samples, code_dim), float64."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        Xs = (X.astype(np.float64, copy=False) - self.offset_) / self.scale_
        model = self._float64_model()
        return self._run(model.encode, Xs)

    def inverse_transform(self, X):
        """Reconstructions, in the original feature space, of codes ``X`` (n_samples, code_dim)."""
        check_is_fitted(self)
        Z = check_array(X, dtype=np.float64)
        if Z.shape[1] != self._n_features_out:
            raise ValueError(
                f"X has {Z.shape[1]} features, but {type(self).__name__}.inverse_transform is expecting "
                f"{self._n_features_out} features (code_dim) as input."
            )
        model = self._float64_model()
        recon = self._run(model.decode, Z)
        return recon * self.scale_ + self.offset_

    def score(self, X, y=None) -> float:
        """Negative mean squared reconstruction error in the original feature space (higher is better, as PCA's)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return -float(np.mean((self.inverse_transform(self.transform(X)) - X) ** 2))

    # -- pickling -------------------------------------------------------------------
    def __getstate__(self):
        """Weights go in as numpy arrays: no torch module is pickled, and a CUDA model loads on a CPU machine."""
        state = dict(super().__getstate__())  # a copy: the parent may hand back self.__dict__ itself
        model = state.pop("model_", None)
        if model is not None:
            state["_model_weights"] = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
            state["_model_input_shape"] = tuple(model.input_shape)
        return state

    def __setstate__(self, state):
        state = dict(state)
        weights = state.pop("_model_weights", None)
        input_shape = state.pop("_model_input_shape", None)
        super().__setstate__(state)
        if weights is not None:
            from .models import build_model

            cfg = self.config_.replace(["train.device=cpu"])
            model = build_model(cfg, input_shape)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            self.model_ = model.eval()
