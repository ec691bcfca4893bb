"""Posterior collapse metrics against hand-built encoders whose variances are known, checked with numpy/scipy."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch.distributions import Normal, kl_divergence

from entropy_elbo import latents as cl
from entropy_elbo.errors import EntropyElboError

# Four latents built to test the metrics: (tau, spread of the encoder mean over the data).
#   z0: tau 1, mean 0          -> collapsed by all three
#   z1: tau 0.05, spread means -> active by all three
#   z2: tau 0.95, spread means -> entropy says collapsed (1.368 > 1 nat), active units and Lucas say active
#   z3: tau 0.04, mean 0       -> entropy and Lucas say active, active units says collapsed (Var = 0)
TAU = np.array([1.0, 0.05, 0.95, 0.04])
SPREAD = np.array([0.0, 1.0, 0.5, 0.0])
WANT = {"entropy": [True, False, True, False], "active_units": [True, False, False, True],
        "lucas": [True, False, False, False]}


class KnownEncoder(torch.nn.Module):
    """nu = x * spread + offset, log tau^2 constant per latent; prior N(0, A) when prior_log_var is given."""

    def __init__(self, tau: np.ndarray, spread: np.ndarray, offset: float = 0.0, prior_log_var=None) -> None:
        super().__init__()
        self.latent_dim = len(tau)
        self.decoder_variance = "fixed"
        self.log_tau2 = torch.tensor(2 * np.log(tau), dtype=torch.float32)
        self.spread = torch.tensor(spread, dtype=torch.float32)
        self.offset = offset
        self.prior_log_var = None if prior_log_var is None else torch.tensor(prior_log_var, dtype=torch.float32)

    def encode(self, x):
        nu = x * self.spread + self.offset
        return nu, self.log_tau2.expand_as(nu)


def reference(nu: np.ndarray, tau: np.ndarray, prior_var: np.ndarray | None = None, eps: float = 0.01) -> dict:
    """The per-latent statistics on the whole array at once, with scipy and torch.distributions."""
    prior_std = np.ones_like(tau) if prior_var is None else np.sqrt(prior_var)
    q = Normal(torch.tensor(nu, dtype=torch.float64), torch.tensor(np.broadcast_to(tau, nu.shape).copy()))
    kl = kl_divergence(q, Normal(torch.zeros(len(tau), dtype=torch.float64), torch.tensor(prior_std))).numpy()
    return {"entropy": norm(scale=tau).entropy(), "prior_entropy": norm(scale=prior_std).entropy(),
            "kl": kl.mean(0), "variance": nu.var(0), "fraction": (kl < eps).mean(0)}


def data(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, len(TAU))).astype(np.float32)


def chunks(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]


def test_known_latents_get_the_verdicts_they_were_built_for():
    x = data()
    result = cl.collapse(KnownEncoder(TAU, SPREAD), chunks(x, 256))
    assert result.collapsed == WANT
    assert result.counts == {"entropy": 2, "active_units": 2, "lucas": 1}
    assert result.order == [0, 2, 1, 3]  # entropies 1.419, 1.368, -1.577, -1.800
    assert result.disagreements == [2, 3]


def test_statistics_match_whole_array_reference():
    x = data()
    nu = x.astype(np.float64) * SPREAD.astype(np.float32)
    ref = reference(nu, TAU)
    result = cl.collapse(KnownEncoder(TAU, SPREAD), chunks(x, 300))
    np.testing.assert_allclose(result.mean_entropy, ref["entropy"], rtol=1e-6)  # tau held in float32
    np.testing.assert_allclose(result.prior_entropy, [0.5 * math.log(2 * math.pi * math.e)] * 4, rtol=1e-15)
    np.testing.assert_allclose(result.distance_to_prior, ref["prior_entropy"] - ref["entropy"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.mean_kl, ref["kl"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.mean_variance, ref["variance"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(result.lucas_fraction, ref["fraction"], atol=1e-12)
    assert 0.1 < result.lucas_fraction[2] < 0.3  # z2: the KL < 0.01 only where |nu| < 0.12, about 19% of points


@pytest.mark.parametrize("size", [1, 7, 64, 2000])
def test_streaming_chunks_equal_one_whole_array_pass(size):
    x = data(n=2000, seed=3)
    model = KnownEncoder(TAU, SPREAD, offset=1e3)  # a large mean: the chunk merge must not lose the variance
    whole = cl.collapse_from_encodings([model.encode(torch.as_tensor(x))])
    streamed = cl.collapse(model, chunks(x, size))
    for field in ("mean_entropy", "mean_kl", "mean_variance", "lucas_fraction"):
        np.testing.assert_allclose(getattr(streamed, field), getattr(whole, field), rtol=1e-10, atol=1e-12)
    nu = x.astype(np.float64) * SPREAD.astype(np.float32) + 1e3
    np.testing.assert_allclose(streamed.mean_variance, (nu.astype(np.float32).astype(np.float64)).var(0), rtol=1e-9)
    assert streamed.n == whole.n == 2000


def test_learned_prior_delta_rule_and_kl():
    prior_var = np.array([0.5, 2.0, 1.0, 4.0])
    x = data(n=500, seed=5)
    model = KnownEncoder(TAU, SPREAD, prior_log_var=np.log(prior_var))
    result = cl.collapse(model, chunks(x, 128), delta=0.3)
    ref = reference(x.astype(np.float64) * SPREAD.astype(np.float32), TAU, prior_var)
    np.testing.assert_allclose(result.prior_entropy, ref["prior_entropy"], rtol=1e-6)
    np.testing.assert_allclose(result.entropy_threshold, ref["prior_entropy"] - 0.3, rtol=1e-6)
    np.testing.assert_allclose(result.mean_kl, ref["kl"], rtol=1e-6, atol=1e-9)
    assert result.collapsed["entropy"] == list(ref["entropy"] > ref["prior_entropy"] - 0.3)
    assert result.settings["delta"] == 0.3 and result.settings["threshold"] is None


def test_threshold_and_delta_are_the_same_rule_for_the_standard_prior():
    x = data(n=300)
    model = KnownEncoder(np.array([0.7, 0.8, 0.9, 1.0]), SPREAD)  # entropies 1.06, 1.20, 1.31, 1.42
    for delta in (0.05, 0.2, 0.3, 0.5):
        by_delta = cl.collapse(model, [x], delta=delta)
        by_threshold = cl.collapse(model, [x], threshold=cl.PRIOR_ENTROPY - delta)
        assert by_delta.collapsed == by_threshold.collapsed
    assert cl.collapse(model, [x], delta=0.3).counts["entropy"] == 3  # 1.20, 1.31 and 1.42 exceed 1.119


def test_lucas_fraction_is_at_least_one_minus_delta():
    nu = torch.zeros(100, 1)
    nu[0, 0] = 1.0  # one point with KL 0.5, 99 with KL 0: P[KL < eps] = 0.99 exactly
    log_tau2 = torch.zeros(100, 1)
    at = cl.collapse_from_encodings([(nu, log_tau2)], lucas_delta=0.01)
    below = cl.collapse_from_encodings([(nu, log_tau2)], lucas_delta=0.005)
    assert at.lucas_fraction == [0.99]
    assert at.collapsed["lucas"] == [True] and below.collapsed["lucas"] == [False]


def test_active_threshold_is_a_strict_inequality_on_the_variance():
    nu = torch.tensor([[-0.125], [0.125]], dtype=torch.float64)  # population variance exactly 2^-6
    log_tau2 = torch.full((2, 1), -4.0)
    at = cl.collapse_from_encodings([(nu, log_tau2)], active_threshold=2.0**-6)
    below = cl.collapse_from_encodings([(nu, log_tau2)], active_threshold=0.0156)
    assert at.mean_variance == [2.0**-6]
    assert at.collapsed["active_units"] == [True] and below.collapsed["active_units"] == [False]


def test_to_dict_rows_are_sorted_and_complete():
    r = cl.collapse(KnownEncoder(TAU, SPREAD), [data(n=400)])
    d = r.to_dict()
    rows = d["latents"]
    assert [row["latent"] for row in rows] == r.order
    entropies = [row["mean_encoder_entropy"] for row in rows]
    assert entropies == sorted(entropies, reverse=True)
    assert d["active"] == {m: 4 - c for m, c in r.counts.items()}
    assert rows[0]["collapsed"] == {"entropy": True, "active_units": True, "lucas": True}


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 1.0, "delta": 0.4}, "not both"),
    ({"lucas_delta": 1.0}, "--lucas-delta"),
    ({"lucas_epsilon": 0.0}, "--lucas-epsilon"),
    ({"active_threshold": -1.0}, "--active-threshold"),
    ({"threshold": float("nan")}, "--threshold"),
])
def test_bad_settings_are_user_errors(kwargs, match):
    with pytest.raises(EntropyElboError, match=match):
        cl.collapse(KnownEncoder(TAU, SPREAD), [data(n=10)], **kwargs)


def test_no_rows_and_non_finite_encoder_are_errors():
    with pytest.raises(EntropyElboError, match="no rows"):
        cl.collapse(KnownEncoder(TAU, SPREAD), [])
    bad = data(n=10)
    bad[3, 1] = np.inf
    with pytest.raises(EntropyElboError, match=r"data row 13, latent \d: the encoder gives mean"):
        cl.collapse(KnownEncoder(TAU, SPREAD), [data(n=10), bad])
