"""Generation from any autoencoder: draw codes, decode them.

A VAE draws from its prior N(0, I) by default. Any other model (and a VAE with
``source="gmm"``) draws from a Gaussian mixture fitted on the codes of the training set,
as Pythae's GaussianMixtureSampler does: a plain autoencoder has no prior, but its codes
of real images fill a region a mixture can describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..models import capabilities
from .evaluate import decode_array, encode_array

GMM_FIT_SAMPLES = 20_000  # enough for a 10-component mixture; fitting all 60k codes is slower for no gain


@dataclass
class CodeSampler:
    """A fitted Gaussian mixture over flattened codes, reshaped to the model's code shape on draw."""

    gmm: Any  # sklearn.mixture.GaussianMixture
    code_shape: tuple[int, ...]

    def draw(self, n: int, seed: int = 0) -> np.ndarray:
        self.gmm.random_state = seed
        z, _ = self.gmm.sample(n)
        z = z[np.random.default_rng(seed).permutation(n)]  # sklearn returns draws sorted by component
        return z.astype(np.float32).reshape(n, *self.code_shape)


def fit_code_sampler(
    model, x_train, components: int = 10, seed: int = 0, max_samples: int = GMM_FIT_SAMPLES
) -> CodeSampler:
    from sklearn.mixture import GaussianMixture

    if len(x_train) < components:
        raise ConfigError(
            f"sample: a {components}-component mixture needs at least {components} training samples, got {len(x_train)}"
        )
    idx = np.random.default_rng(seed).permutation(len(x_train))[:max_samples]
    idx.sort()  # memory-mapped data reads faster in order
    codes = encode_array(model, x_train[idx]).astype(np.float64)
    flat = codes.reshape(len(codes), -1)
    cov = "full" if flat.shape[1] <= 256 else "diag"  # a full covariance of a big conv code is huge
    gmm = GaussianMixture(components, covariance_type=cov, random_state=seed, reg_covar=1e-4, max_iter=200)
    gmm.fit(flat)
    return CodeSampler(gmm, tuple(codes.shape[1:]))


def sample(model, n: int, x_train=None, source: str = "auto", components: int = 10, seed: int = 0) -> np.ndarray:
    """n decoded samples (N, *input_shape); ``source``: auto (prior for VAEs, else gmm), prior, gmm."""
    if n < 1:
        raise ConfigError(f"sample: -n must be >= 1, got {n}")
    has_prior = capabilities(model).generative
    if source == "auto":
        source = "prior" if has_prior else "gmm"
    if source == "prior":
        if not has_prior:
            raise ConfigError(f"sample: --from prior needs a VAE; {type(model).__name__} has no prior (use --from gmm)")
        gen = torch.Generator().manual_seed(seed)
        was = model.training
        model.eval()
        try:
            return model.sample(n, generator=gen).float().cpu().numpy()
        finally:
            model.train(was)
    if source != "gmm":
        raise ConfigError(f"sample: --from must be auto, prior or gmm, got '{source}'")
    if x_train is None:
        raise ConfigError("sample: the Gaussian-mixture sampler needs the training data")
    z = fit_code_sampler(model, x_train, components, seed).draw(n, seed)
    return decode_array(model, z)
