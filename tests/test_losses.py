"""Long-tail losses vs plain NumPy transcriptions of their formulas."""

from __future__ import annotations

import numpy as np
import pytest

import keras
import tensorflow as tf

from mlbench.errors import InputError
from mlbench.keras.losses import (
    LOSS_NAMES,
    BalancedFocalLoss,
    FocalLoss,
    LogitBCE,
    cb_weights,
    make_loss,
    ntr_bias,
    wbce_pos_weights,
)

TOL = 1e-5
N_DOCS = 500
C = 12


def _data(seed: int = 0, B: int = 16):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 200, size=C)
    counts[0] = 0  # a label never seen in training
    counts[1] = 1
    z = rng.normal(0, 3, size=(B, C)).astype(np.float32)
    y = (rng.random((B, C)) < 0.25).astype(np.float32)
    y[0] = 0  # a document with no labels
    return counts, z, y


# ---------------------------------------------------------------- NumPy references
def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_bce(y, z, pos_weight=1.0):
    p = _sig(z.astype(np.float64))
    return np.mean(-(pos_weight * y * np.log(p) + (1 - y) * np.log(1 - p)))


def np_wbce_weights(counts, n, min_w=0.5, max_w=10.0, pct=95.0):
    counts = counts.astype(np.float64)
    w = np.empty_like(counts)
    seen = counts > 0
    w[seen] = (n - counts[seen]) / counts[seen]
    cap = max_w if max_w is not None else np.percentile(w[seen], pct)
    w[seen] = np.minimum(np.maximum(w[seen], min_w), cap)
    w[~seen] = cap
    return w


def np_focal_family(y, z, counts, n, *, gamma=2.0, weight="none", kappa=0.0, lam=1.0,
                    alpha=0.1, beta=10.0, mu=0.9, cb_beta=0.9, cb_norm=True):
    """Direct transcription of Huang et al. (2021) eqs. for FL / CB / R-FL / NTR / DB."""
    z = z.astype(np.float64)
    nc = np.maximum(counts.astype(np.float64), 1.0)
    p_prior = np.clip(nc, 1, n - 1) / n
    b_hat = -np.log(1.0 / p_prior - 1.0)
    nu = kappa * b_hat
    zs = z - nu
    q_pos = _sig(zs)
    q_neg = _sig(lam * zs)
    loss = -(y * (1 - q_pos) ** gamma * np.log(q_pos)
             + (1.0 / lam) * (1 - y) * q_neg ** gamma * np.log(1 - q_neg))
    if weight == "cb":
        r = (1 - cb_beta) / (1 - cb_beta ** nc)
        if cb_norm:
            r = r / r.mean()
        loss = loss * r
    elif weight == "rebalance":
        pc = 1.0 / nc  # P^C_c up to the common 1/C factor
        w = np.empty_like(loss)
        for k in range(y.shape[0]):
            pi = np.sum(pc[y[k] == 1])  # P^I_k up to 1/C
            if pi == 0:
                w[k] = alpha + _sig(beta * np.inf) if beta != 0 else alpha + 0.5
            else:
                w[k] = alpha + _sig(beta * (pc / pi - mu))
        loss = loss * w
    return loss.mean()


REFERENCES = {
    "focal": dict(),
    "cb": dict(weight="cb"),
    "rfl": dict(weight="rebalance"),
    "ntr": dict(kappa=0.05, lam=2.0),
    "db": dict(weight="rebalance", kappa=0.05, lam=2.0),
    "cbntr": dict(weight="cb", kappa=0.05, lam=2.0),
}


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_focal_family_matches_numpy(name: str, seed: int) -> None:
    counts, z, y = _data(seed)
    loss = make_loss(name, counts, N_DOCS)
    got = float(loss(y, z))
    ref = np_focal_family(y, z, counts, N_DOCS, **REFERENCES[name])
    assert got == pytest.approx(ref, rel=TOL, abs=TOL)


def test_overrides_reach_the_formula() -> None:
    counts, z, y = _data(3)
    kw = dict(gamma=1.5, kappa=0.2, lam=3.0, alpha=0.2, beta=5.0, mu=0.5)
    got = float(make_loss("db", counts, N_DOCS, **kw)(y, z))
    ref = np_focal_family(y, z, counts, N_DOCS, weight="rebalance", **kw)
    assert got == pytest.approx(ref, rel=TOL)
    got = float(make_loss("cbntr", counts, N_DOCS, cb_beta=0.99, cb_normalize="none")(y, z))
    ref = np_focal_family(y, z, counts, N_DOCS, weight="cb", kappa=0.05, lam=2.0,
                          cb_beta=0.99, cb_norm=False)
    assert got == pytest.approx(ref, rel=TOL)


def test_bce_and_wbce_match_numpy() -> None:
    counts, z, y = _data(4)
    assert float(make_loss("bce", counts, N_DOCS)(y, z)) == pytest.approx(np_bce(y, z), rel=TOL)
    keras_bce = keras.losses.BinaryCrossentropy(from_logits=True)(y, z)
    assert float(LogitBCE()(y, z)) == pytest.approx(float(keras_bce), rel=1e-4)
    for kw, ref_kw in [({}, {}), ({"max_weight": 50.0}, {"max_w": 50.0}),
                       ({"max_weight": None}, {"max_w": None}),
                       ({"max_weight": None, "cap_percentile": 50.0, "min_weight": 1.0},
                        {"max_w": None, "pct": 50.0, "min_w": 1.0})]:
        w = np_wbce_weights(counts, N_DOCS, **ref_kw)
        np.testing.assert_allclose(wbce_pos_weights(counts, N_DOCS, **kw), w)
        got = float(make_loss("wbce", counts, N_DOCS, **kw)(y, z))
        assert got == pytest.approx(np_bce(y, z, pos_weight=w), rel=TOL)


def test_wbce_weight_guard_rails() -> None:
    counts = np.array([0, 1, 10, 250, 500, 499])
    w = wbce_pos_weights(counts, 500, max_weight=20.0)
    assert w.tolist() == [20.0, 20.0, 20.0, 1.0, 0.5, 0.5]  # unseen -> cap; floor 0.5
    w = wbce_pos_weights(counts, 500)  # default: cap 10
    assert w.tolist() == [10.0, 10.0, 10.0, 1.0, 0.5, 0.5]
    w = wbce_pos_weights(counts, 500, max_weight=None)  # 95th percentile of seen-label weights
    seen_raw = (500 - counts[1:]) / counts[1:]
    assert w[0] == pytest.approx(np.percentile(seen_raw, 95))
    assert w.max() == pytest.approx(np.percentile(seen_raw, 95))
    # a cap below the floor is lifted to the floor
    assert wbce_pos_weights(counts, 500, max_weight=0.1).tolist() == [0.5] * 6


def test_cb_weights_normalised() -> None:
    counts = np.array([1, 2, 5, 50, 1000])
    w = cb_weights(counts)
    assert w.mean() == pytest.approx(1.0)
    assert np.all(np.diff(w) < 0)  # rarer labels weigh more
    raw = cb_weights(counts, normalize="none")
    assert raw[0] == pytest.approx(1.0) and raw[-1] == pytest.approx(0.1)


def test_ntr_bias_is_kappa_times_prior_logit() -> None:
    counts = np.array([5, 250, 495])
    b = ntr_bias(counts, 500, kappa=1.0)
    np.testing.assert_allclose(b, np.log(counts / (500 - counts)))
    assert b[1] == pytest.approx(0.0)


def test_focal_gamma0_is_bce() -> None:
    counts, z, y = _data(5)
    fl0 = float(FocalLoss(gamma=0.0)(y, z))
    assert fl0 == pytest.approx(float(LogitBCE()(y, z)), rel=1e-6)
    assert fl0 == pytest.approx(np_bce(y, z), rel=TOL)


def test_db_without_rebalancing_and_shift_is_focal() -> None:
    counts, z, y = _data(6)
    focal = float(make_loss("focal", counts, N_DOCS)(y, z))
    # r_hat = 0.5 + sigma(0 * (r - mu)) = 1 exactly
    db_w1 = make_loss("db", counts, N_DOCS, alpha=0.5, beta=0.0, kappa=0.0, lam=1.0)
    assert float(db_w1(y, z)) == pytest.approx(focal, rel=1e-6)
    # or switch the weighting off altogether
    db_off = make_loss("db", counts, N_DOCS, weighting=None, kappa=0.0, lam=1.0)
    assert float(db_off(y, z)) == pytest.approx(focal, rel=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_finite_loss_and_gradients_at_extreme_logits(name: str) -> None:
    counts, _, _ = _data(7, B=4)
    loss = make_loss(name, counts, N_DOCS)
    z = tf.Variable(np.array([[100.0, -100.0] * (C // 2), [-100.0, 100.0] * (C // 2),
                              [1e4] * C, [-1e4] * C], dtype=np.float32))
    y = np.array([[1, 1] * (C // 2), [0, 1] * (C // 2), [1, 0] * (C // 2), [0] * C],
                 dtype=np.float32)
    with tf.GradientTape() as tape:
        value = loss(y, z)
    grad = tape.gradient(value, z)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(grad.numpy()))
    # a confident right answer costs (almost) nothing, a confident wrong one a lot
    assert float(loss(np.array([[1.0] * C]), np.full((1, C), 100.0, np.float32))) < 1e-6


def test_sample_weight_and_reduction() -> None:
    counts, z, y = _data(8)
    loss = make_loss("db", counts, N_DOCS)
    per_doc = np.mean(loss.elementwise(y, z).numpy(), axis=-1)
    sw = np.linspace(0, 1, len(z)).astype(np.float32)
    assert float(loss(y, z, sample_weight=sw)) == pytest.approx(np.mean(per_doc * sw), rel=TOL)


def test_make_loss_errors_and_serialisation() -> None:
    counts, z, y = _data(9)
    with pytest.raises(InputError) as err:
        make_loss("dbloss", counts, N_DOCS)
    for valid in LOSS_NAMES:
        assert valid in str(err.value)
    with pytest.raises(InputError):
        make_loss("db", counts, N_DOCS, not_a_parameter=1)
    with pytest.raises(ValueError):
        BalancedFocalLoss(weighting="cb")  # needs counts
    for name in LOSS_NAMES:
        loss = make_loss(name, counts, N_DOCS)
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.name == name
        assert float(clone(y, z)) == pytest.approx(float(loss(y, z)), rel=1e-6)


def test_trains_in_a_keras_model() -> None:
    counts, _, _ = _data(10)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (rng.random((64, C)) < 0.2).astype(np.float32)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(C)])
    model.compile(optimizer="adam", loss=make_loss("db", counts, N_DOCS))
    hist = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
