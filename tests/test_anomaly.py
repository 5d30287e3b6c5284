"""Anomaly scoring: AnomalyDetector (PyOD surface), `aelab score`, held-out-class AUC, tabular scaling."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from aelab import AnomalyDetector, Config, ConfigError, load_run, train
from aelab.anomaly import run_train_scores, score_array, threshold_at
from aelab.cli import main

quiet = {"log": lambda *_: None}


def plane_data(n: int, seed: int = 0, d: int = 10, offset: float = 0.0):
    """Inliers near a 2-D plane in d dimensions (scaled far from [0, 1]); outliers off it."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(2, d))
    inl = rng.normal(size=(n, 2)) @ basis + 0.05 * rng.normal(size=(n, d))
    out = 3 * rng.normal(size=(n // 10, d))
    return (inl * 20 + 500 + offset).astype(np.float32), (out * 20 + 500 + offset).astype(np.float32)


@pytest.fixture(scope="module")
def detector():
    x, _ = plane_data(400)
    return AnomalyDetector(
        hidden=(16,), code_dim=2, epochs=15, batch_size=64, lr=1e-2, contamination=0.05, threads=1
    ).fit(x)


def test_detector_separates_toy_outliers(detector):
    from sklearn.metrics import roc_auc_score

    inl, out = plane_data(200, seed=1)
    scores = detector.decision_function(np.concatenate([inl, out]))
    truth = np.r_[np.zeros(len(inl)), np.ones(len(out))]
    assert roc_auc_score(truth, scores) > 0.95
    pred = detector.predict(np.concatenate([inl, out]))
    assert set(np.unique(pred)) <= {0, 1} and pred.dtype == np.int64
    assert pred[len(inl) :].mean() > 0.8 and pred[: len(inl)].mean() < 0.2
    # threshold_ is the (1 - contamination) quantile of the training scores
    assert detector.threshold_ == pytest.approx(np.quantile(detector.decision_scores_, 0.95))
    assert detector.labels_.mean() == pytest.approx(0.05, abs=0.01)
    assert detector.metric_ == "mse" and detector.run_.model.output_activation == "identity"
    assert detector.run_.scaler is not None  # tabular input is standardised


def test_detector_errors():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="Call 'fit'"):
        AnomalyDetector().predict(np.zeros((3, 4)))
    with pytest.raises(ConfigError) as e:
        AnomalyDetector(contamination=0.7).fit(np.zeros((10, 3)))
    assert str(e.value) == (
        "The 'contamination' parameter of AnomalyDetector must be a float in the range (0, 0.5] "
        "(the share of outliers). Got 0.7 instead."
    )
    with pytest.raises(ConfigError) as e:
        AnomalyDetector(metric="mae").fit(np.zeros((10, 3)))
    assert str(e.value) == (
        "The 'metric' parameter of AnomalyDetector must be a str among "
        "{'auto', 'mse', 'bce', 'nelbo'}. Got 'mae' instead."
    )


@pytest.mark.parametrize(
    "bad,name,given",
    [
        ({"contamination": 0}, "contamination", "0"),
        ({"contamination": float("nan")}, "contamination", "nan"),
        ({"dropout": 1.0}, "dropout", "1.0"),
        ({"weight_decay": -1e-3}, "weight_decay", "-0.001"),
        ({"batch_norm": "yes"}, "batch_norm", "'yes'"),
        ({"model": "conv"}, "model", "'conv'"),
        ({"precision": "fp16"}, "precision", "'fp16'"),
        ({"hidden": (0,)}, "hidden", "(0,)"),
        ({"code_dim": 0}, "code_dim", "0"),
        ({"epochs": 1.5}, "epochs", "1.5"),
        ({"lr": -1}, "lr", "-1"),
        ({"scale": "minmax"}, "scale", "'minmax'"),
        ({"loss": "bce"}, "loss", "'bce'"),  # bce on a table
    ],
)
def test_detector_parameter_errors_name_parameter_allowed_and_given(bad, name, given):
    with pytest.raises(ConfigError) as e:
        AnomalyDetector(**bad).fit(np.zeros((10, 3)))
    msg = str(e.value)
    assert msg.startswith(f"The '{name}' parameter of AnomalyDetector must be ") and msg.endswith(
        f"Got {given} instead."
    )


def test_detector_on_images_and_saved_run(tmp_path):
    from conftest import make_blobs

    x, _ = make_blobs(200, 0)
    det = AnomalyDetector(hidden=(32,), code_dim=4, epochs=2, threads=1, out=tmp_path / "run").fit(x)
    assert det.metric_ == "mse" and det.run_.model.output_activation == "sigmoid"  # MSE scores, whatever the loss
    assert det.run_.config.train.loss == "bce"
    back = AnomalyDetector.from_run(tmp_path / "run", contamination=0.05)  # scores cached by fit
    np.testing.assert_allclose(back.decision_function(x[:20]), det.decision_function(x[:20]), rtol=1e-5)
    assert back.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.95))


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    from aelab.data.idx import write_idx
    from conftest import make_blobs

    d = tmp_path_factory.mktemp("idx")
    for stem, (x, y) in {"train": make_blobs(600, 0), "t10k": make_blobs(100, 1)}.items():
        write_idx(d / f"{stem}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{stem}-labels-idx1-ubyte.gz", y)
    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(d), "exclude_classes": [3]},
            "model": {"name": "dense", "hidden": [64], "code_dim": 8},
            "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3, "threads": 1},
        }
    )
    run = train(cfg, d.parent / "run", **quiet)
    return run.path


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_score_cli_writes_csv_and_caches_training_scores(tmp_path, dense_run, capsys):
    from conftest import make_blobs

    x, _ = make_blobs(30, 5)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "scores.csv"
    assert main(["score", str(dense_run), str(tmp_path / "x.npy"), "-o", str(out), "--quantile", "0.9"]) == 0
    rows = read_rows(out)
    assert list(rows[0]) == ["index", "score", "is_outlier"] and len(rows) == 30
    run = load_run(dense_run)
    train_scores = run_train_scores(run, "mse")  # auto scores by MSE although the run trained with BCE
    assert (dense_run / "anomaly-train-mse.safetensors").is_file() and len(train_scores) == len(run.load_data().x_train)
    thr = threshold_at(train_scores, 0.9)
    scores = score_array(run.model, run.prepare_input(x), "mse")
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, rtol=1e-6)
    assert [int(r["is_outlier"]) for r in rows] == list((scores > thr).astype(int))
    assert "threshold" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,msg",
    [
        (["missing.npy", "-o", "s.csv"], "file not found"),
        (["bad.npy", "-o", "s.csv"], "do not fit the model's input"),
        (["good.npy", "-o", "s.csv", "--quantile", "1.5"], "--quantile: must be a number strictly between 0 and 1"),
        (["good.npy"], "-o/--output"),
        (["good.npy", "-o", "s.csv", "--metric", "nelbo"], "nelbo (negative ELBO) needs a VAE run"),
        (["nan.npy", "-o", "s.csv"], "NaN"),
    ],
)
def test_score_cli_bad_input_exits_2(tmp_path, dense_run, capsys, monkeypatch, args, msg):
    monkeypatch.chdir(tmp_path)
    np.save("bad.npy", np.zeros((3, 5, 5), np.uint8))
    np.save("good.npy", np.zeros((3, 28, 28), np.uint8))
    nan = np.zeros((2, 784), np.float32)
    nan[1, 3] = np.nan
    np.save("nan.npy", nan)
    assert main(["score", str(dense_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


def test_score_cli_held_out_class_auc(dense_run, capsys):
    assert main(["score", str(dense_run)]) == 0
    res = json.loads((dense_run / "anomaly.json").read_text())
    assert res["held_out_classes"] == [3] and 0.0 <= res["roc_auc"] <= 1.0
    assert json.loads(capsys.readouterr().out)["roc_auc"] == res["roc_auc"]
    summary = json.loads((dense_run / "summary.json").read_text())
    assert summary["test_roc_auc"] == res["roc_auc"] and "test_bce" in summary
    for f in ("histogram.png", "top.png", "scores-test.csv"):
        assert (dense_run / "anomaly" / f).stat().st_size > 0
    rows = read_rows(dense_run / "anomaly" / "scores-test.csv")
    assert len(rows) == 100 and "label" in rows[0]


def test_tabular_run_standardises_and_scores_csv(tmp_path):
    x, out = plane_data(300, offset=1000)
    np.savetxt(tmp_path / "train.csv", x, delimiter=",")
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "train.csv"), "scale": "standard"},
            "model": {"name": "dense", "hidden": [16], "code_dim": 2, "output_activation": "identity"},
            "train": {"epochs": 15, "batch_size": 64, "lr": 1e-2, "loss": "mse", "checkpoint_every": 15, "threads": 1},
        }
    )
    train(cfg, tmp_path / "run", **quiet)
    run = load_run(tmp_path / "run")
    assert (tmp_path / "run" / "scaler.safetensors").is_file()
    np.testing.assert_allclose(run.prepare_input(x).mean(0), 0, atol=0.15)  # the saved scaler is applied
    inl, outl = plane_data(100, seed=3, offset=1000)
    np.savetxt(tmp_path / "new.csv", np.concatenate([inl, outl]), delimiter=",")
    assert main(["score", str(tmp_path / "run"), str(tmp_path / "new.csv"), "-o", str(tmp_path / "s.csv")]) == 0
    flags = np.array([int(r["is_outlier"]) for r in read_rows(tmp_path / "s.csv")])
    assert flags[len(inl) :].mean() > 0.8 and flags[: len(inl)].mean() < 0.1


def test_vae_run_scores_with_negative_elbo(tmp_path, idx_dir):
    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir)},
            "model": {"name": "vae-dense", "hidden": [32], "code_dim": 2},
            "train": {"epochs": 1, "batch_size": 64, "threads": 1},
        }
    )
    train(cfg, tmp_path / "run", **quiet)
    assert AnomalyDetector.from_run(tmp_path / "run").metric_ == "mse"  # auto: MSE for a VAE too (measured best)
    det = AnomalyDetector.from_run(tmp_path / "run", metric="nelbo")
    assert det.metric_ == "nelbo"
    x = load_run(tmp_path / "run").load_data().x_test[:10]
    s1, s2 = det.decision_function(x), det.decision_function(x)
    assert np.isfinite(s1).all() and (s1 > 0).all()
    np.testing.assert_array_equal(s1, s2)  # fixed draws: the same input, the same score


def test_detector_with_a_gaussian_vae_on_tabular_data():
    from sklearn.metrics import roc_auc_score

    x, _ = plane_data(400)
    det = AnomalyDetector(
        model="vae-dense", hidden=(16,), code_dim=2, epochs=15, batch_size=64, lr=1e-2, contamination=0.05, threads=1
    ).fit(x)
    assert det.metric_ == "mse" and det.run_.model.likelihood == "gaussian"
    inl, out = plane_data(200, seed=1)
    truth = np.r_[np.zeros(len(inl)), np.ones(len(out))]
    assert roc_auc_score(truth, det.decision_function(np.concatenate([inl, out]))) > 0.95
    det.set_params(metric="nelbo")  # a parameter read at scoring time needs a refit, as in scikit-learn
    det.fit(x)
    assert det.metric_ == "nelbo"
    assert roc_auc_score(truth, det.decision_function(np.concatenate([inl, out]))) > 0.95


# -- scikit-learn's contract and PyOD's surface ---------------------------------------------

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from aelab.anomaly import SKLEARN_CHECKS_EXPECTED_TO_FAIL  # noqa: E402


@parametrize_with_checks(
    [AnomalyDetector(hidden=(8,), code_dim=2, epochs=2, batch_size=16, threads=1)],
    expected_failed_checks=lambda est: SKLEARN_CHECKS_EXPECTED_TO_FAIL,
)
def test_sklearn_estimator_checks(estimator, check):
    """Every check of the installed scikit-learn; the two that assume its -1/+1 labels are expected to fail."""
    check(estimator)


def test_clone_and_regularisers_reach_the_model():
    from sklearn.base import clone

    det = AnomalyDetector(
        hidden=(16,),
        code_dim=2,
        epochs=1,
        dropout=0.2,
        batch_norm=True,
        weight_decay=1e-4,
        contamination=0.5,
        threads=1,
    )
    twin = clone(det)
    assert twin.get_params() == det.get_params() and twin is not det
    x, _ = plane_data(100)
    twin.fit(x)
    cfg = twin.run_.config
    assert (cfg.model.dropout, cfg.model.batch_norm, cfg.train.weight_decay) == (0.2, True, 1e-4)
    assert cfg.train.precision == "fp32"  # the same model on every CPU kind
    mods = {type(m).__name__ for m in twin.run_.model.modules()}
    assert {"Dropout", "BatchNorm1d"} <= mods
    assert twin.labels_.mean() == pytest.approx(0.5, abs=0.02)  # contamination 0.5 is allowed (PyOD's range)
    assert not hasattr(det, "run_")  # clone left the original unfitted


def pyod_reference(det, x):
    """PyOD 3.6's base.py formulas, written as there (MinMaxScaler, erf, the np.vectorize loops)."""
    from scipy.special import erf
    from scipy.stats import binom
    from sklearn.preprocessing import MinMaxScaler

    train, test = det.decision_scores_, det.decision_function(x)
    linear = MinMaxScaler().fit(train.reshape(-1, 1)).transform(test.reshape(-1, 1)).ravel().clip(0, 1)
    unify = erf((test - np.mean(train)) / (np.std(train) * np.sqrt(2))).clip(0, 1)
    n = len(train)
    n_instances = np.vectorize(lambda v: np.count_nonzero(train <= v))(test)
    posterior = np.vectorize(lambda v: (1 + v) / (2 + n))(n_instances)
    conf = np.vectorize(lambda p: 1 - binom.cdf(n - int(n * det.contamination), n, p))(posterior)
    pred = (test > det.threshold_).astype(int)
    np.place(conf, pred == 0, 1 - conf[pred == 0])
    return linear, unify, conf, pred


def test_pyod_surface_matches_pyod_definitions(detector):
    inl, out = plane_data(60, seed=2)
    x = np.concatenate([inl, out])
    linear, unify, conf, pred = pyod_reference(detector, x)
    p = detector.predict_proba(x)
    assert p.shape == (len(x), 2)
    np.testing.assert_allclose(p[:, 1], linear, atol=1e-12)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(detector.predict_proba(x, method="unify")[:, 1], unify, atol=1e-12)
    np.testing.assert_allclose(detector.predict_confidence(x), conf, atol=1e-12)
    labels, c = detector.predict(x, return_confidence=True)
    np.testing.assert_array_equal(labels, pred)
    np.testing.assert_allclose(c, conf, atol=1e-12)
    probs, c2 = detector.predict_proba(x, method="unify", return_confidence=True)
    np.testing.assert_allclose(c2, conf, atol=1e-12)
    assert ((conf >= 0) & (conf <= 1)).all() and conf.min() < conf.max()
    np.testing.assert_array_equal(detector.labels_, (detector.decision_scores_ > detector.threshold_).astype(int))
    with pytest.raises(ConfigError, match=r"The 'method' parameter .* \{'linear', 'unify'\}. Got 'rank' instead."):
        detector.predict_proba(x, method="rank")


def test_save_load_round_trip_without_pickle(tmp_path, detector):
    path = detector.save(tmp_path / "det.safetensors")
    back = AnomalyDetector.load(path)
    inl, out = plane_data(50, seed=4)
    x = np.concatenate([inl, out])
    np.testing.assert_array_equal(back.decision_function(x), detector.decision_function(x))
    assert back.threshold_ == detector.threshold_ and back.metric_ == detector.metric_
    assert back.get_params() == detector.get_params()
    np.testing.assert_array_equal(back.predict_proba(x, method="unify"), detector.predict_proba(x, method="unify"))
    np.testing.assert_array_equal(back.labels_, detector.labels_)
    # the file is plain safetensors: loadable by the library alone, no pickle inside
    from safetensors.numpy import load_file

    assert "decision_scores" in load_file(path) and b"\x80\x04" not in path.read_bytes()[:8]


def test_save_load_images_and_a_vae(tmp_path):
    from conftest import make_blobs

    x, _ = make_blobs(120, 0)
    for kw in ({}, {"model": "vae-dense"}):
        det = AnomalyDetector(hidden=(16,), code_dim=2, epochs=1, threads=1, **kw).fit(x)
        back = AnomalyDetector.load(det.save(tmp_path / "d.safetensors"))
        np.testing.assert_allclose(back.decision_function(x[:10]), det.decision_function(x[:10]), rtol=1e-12)
        assert back.metric_ == "mse" and back.n_features_in_ == 784


def test_load_refuses_foreign_and_damaged_files(tmp_path, detector):
    import pickle

    from aelab import RunError

    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "cut.safetensors").write_bytes(detector.save(tmp_path / "ok.safetensors").read_bytes()[:100])
    import torch

    from aelab._io import save_safetensors

    save_safetensors(tmp_path / "other.safetensors", {"w": torch.zeros(2)})
    for name, msg in [
        ("p", "not a readable safetensors file"),
        ("cut", "not a readable safetensors file"),
        ("other", "not a detector saved by AnomalyDetector.save"),
        ("missing", "no such file"),
    ]:
        with pytest.raises(RunError, match=msg):
            AnomalyDetector.load(tmp_path / f"{name}.safetensors")


def test_wrong_feature_count_and_nan_are_value_errors(detector):
    with pytest.raises(ValueError, match="X has 3 features, but AnomalyDetector is expecting 10 features"):
        detector.decision_function(np.zeros((4, 3)))
    bad = np.zeros((4, 10))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detector.predict(bad)


# -- the score choice is the families' declared capabilities ---------------------------------


def test_auto_is_each_familys_declared_default(monkeypatch):
    import aelab.models
    from aelab.anomaly import resolve_metric
    from aelab.models import capabilities, list_models
    from aelab.models._registry import Capabilities

    for name in list_models():
        caps = capabilities(name)
        assert caps.default_anomaly_score == "mse" and "mse" in caps.anomaly_scores, name  # measured best
        cfg = Config.from_dict({"model": {"name": name}, "train": dict(caps.train_settings)})  # the family's defaults
        assert resolve_metric(cfg.model, "auto", cfg.train.loss) == "mse"
    assert "nelbo" in capabilities("vae-dense").anomaly_scores and "nelbo" not in capabilities("vq-vae").anomaly_scores
    # a family declaring no default is scored by its run's training loss
    monkeypatch.setattr(aelab.models, "capabilities", lambda m: Capabilities(default_anomaly_score=None))
    assert resolve_metric(Config.from_dict({}).model, "auto", "bce") == "bce"


def test_score_cli_on_a_topk_sae_run(tmp_path, capsys):
    """A family from the plug-in registry: `aelab score` takes its declared scores, refuses the others."""
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(12, 16)).astype(np.float32)
    emb = ((rng.random((300, 12)) * (rng.random((300, 12)) < 0.2)) @ atoms).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "emb.npy"), "scale": "none"},
            "model": {"name": "topk-sae", "output_activation": "identity", "expansion": 2, "k": 4},
            "train": {"epochs": 1, "batch_size": 64, "loss": "mse", "precision": "fp32", "threads": 1},
        }
    )
    train(cfg, tmp_path / "run", **quiet)
    np.save(tmp_path / "new.npy", np.concatenate([emb[:10], 5 * rng.normal(size=(10, 16)).astype(np.float32)]))
    assert main(["score", str(tmp_path / "run"), str(tmp_path / "new.npy"), "-o", str(tmp_path / "s.csv")]) == 0
    assert "(mse)" in capsys.readouterr().out
    scores = np.array([float(r["score"]) for r in read_rows(tmp_path / "s.csv")])
    assert len(scores) == 20 and scores[10:].mean() > scores[:10].mean()
    for metric, msg in (("nelbo", "nelbo (negative ELBO) needs a VAE run"), ("bce", "use mse")):
        assert (
            main(
                [
                    "score",
                    str(tmp_path / "run"),
                    str(tmp_path / "new.npy"),
                    "-o",
                    str(tmp_path / "t.csv"),
                    "--metric",
                    metric,
                ]
            )
            == 2
        )
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()
