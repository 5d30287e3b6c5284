"""AutoencoderTransformer: scikit-learn's own estimator checks, pipelines, grid search, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from aelab import AutoencoderTransformer
from conftest import make_blobs, needs_mnist


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """sklearn's checks fit dozens of times on tiny arrays; thread start-up would dominate."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # BLAS threads spinning on a busy 2-core box made one LogisticRegression take a minute
        yield
    torch.set_num_threads(before)


def tiny(**kw) -> AutoencoderTransformer:
    return AutoencoderTransformer(**{"code_dim": 3, "hidden": (8,), "epochs": 2, "batch_size": 16, **kw})


# Every check passes; nothing is skipped or expected to fail (docs/INTEGRATION.md).
@parametrize_with_checks(
    [
        tiny(),
        tiny(scale="standard", loss="mse", code_activation="identity"),
        tiny(scale="minmax", loss="bce", tied=True),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def blob_arrays(n: int, seed: int):
    x, y = make_blobs(n, seed)
    return x.reshape(n, -1).astype(np.float64) / 255.0, y


def test_pipeline_before_logistic_regression_on_synthetic_images():
    X, y = blob_arrays(400, 0)
    Xt, yt = blob_arrays(200, 1)
    pipe = make_pipeline(AutoencoderTransformer(code_dim=8, epochs=5, random_state=0), LogisticRegression(max_iter=500))
    acc = pipe.fit(X, y).score(Xt, yt)
    assert acc > 0.8, acc  # ten square positions; chance is 0.1


@needs_mnist
def test_pipeline_on_real_mnist_codes():
    from aelab import DataConfig, load_data

    s = load_data(DataConfig(name="mnist", limit=2000, test_limit=1000))
    X, Xt = s.x_train.reshape(2000, -1), s.x_test.reshape(1000, -1)
    pipe = make_pipeline(
        AutoencoderTransformer(code_dim=32, epochs=8, loss="bce", random_state=0), LogisticRegression(max_iter=1000)
    )
    acc = pipe.fit(X, s.y_train).score(Xt, s.y_test)
    assert acc > 0.75, acc  # measured 0.81; raw-pixel logistic regression on the same 2,000 images gets 0.86


def test_grid_search_over_code_dim():
    X, y = blob_arrays(200, 2)
    pipe = make_pipeline(AutoencoderTransformer(epochs=2, random_state=0), LogisticRegression(max_iter=200))
    gs = GridSearchCV(pipe, {"autoencodertransformer__code_dim": [2, 6]}, cv=2).fit(X, y)
    assert gs.best_params_["autoencodertransformer__code_dim"] in (2, 6)
    assert gs.best_estimator_[0].model_.cfg.code_dim == gs.best_params_["autoencodertransformer__code_dim"]


def test_transform_inverse_transform_and_feature_names():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) * 100 + 1000  # far from [0, 1]
    ae = AutoencoderTransformer(
        code_dim=4, hidden=(16,), epochs=30, scale="standard", code_activation="identity", random_state=0
    ).fit(X)
    Z = ae.transform(X)
    assert Z.shape == (300, 4) and Z.dtype == np.float64
    R = ae.inverse_transform(Z)
    assert R.shape == X.shape
    # reconstructions live in the original units: their error is far below the features' spread
    assert np.mean((R - X) ** 2) < 0.5 * X.var(axis=0).mean()
    assert ae.score(X) == pytest.approx(
        -np.mean((R - X) ** 2)
    )  # two fp32 evaluations of the same weights, any precision
    assert list(ae.get_feature_names_out()) == [f"autoencodertransformer{i}" for i in range(4)]
    assert ae.n_iter_ == 30 and len(ae.loss_curve_) == 30 and ae.loss_curve_[-1] < ae.loss_curve_[0]
    with pytest.raises(ValueError, match="expecting 4 features"):
        ae.inverse_transform(Z[:, :3])


def test_pickle_round_trip_and_clone():
    X, _ = blob_arrays(100, 3)
    ae = AutoencoderTransformer(code_dim=5, epochs=2, random_state=0).fit(X)
    blob = pickle.dumps(ae)
    assert b"torch.nn" not in blob  # weights travel as arrays, not as a pickled module
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.transform(X), ae.transform(X))
    np.testing.assert_array_equal(back.inverse_transform(ae.transform(X)), ae.inverse_transform(ae.transform(X)))
    c = clone(ae)
    assert c.get_params() == ae.get_params() and not hasattr(c, "model_")


def test_fit_leaves_the_global_torch_rng_alone():
    X, _ = blob_arrays(50, 4)
    before = torch.random.get_rng_state()
    tiny(random_state=1).fit(X)
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.mark.parametrize(
    "params, match",
    [
        (
            {"loss": "l2"},
            r"The 'loss' parameter of AutoencoderTransformer must be a str among \{'mse', 'bce'\}\. Got 'l2'",
        ),
        ({"code_dim": 0}, r"'code_dim' parameter .* must be an int in the range \[1, inf\)\. Got 0"),
        ({"hidden": (8, "x")}, r"'hidden' parameter .* must be a sequence of ints"),
        ({"scale": "standard", "loss": "bce"}, r"needs scale='minmax'"),
        ({"lr": -1.0}, r"'lr' parameter .* Got -1.0"),
    ],
)
def test_bad_parameters_name_the_parameter(params, match):
    X, _ = blob_arrays(20, 5)
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(X)
