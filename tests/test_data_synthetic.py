"""Synthetic data sets checked against their generating distributions (App. A, App. D.4, App. D.5)."""

import itertools

import numpy as np
import pytest

from entropy_elbo.data import (
    SYNTHETIC,
    make_synthetic,
    manifold,
    ppca,
    ppca_truth,
    ring,
    stream,
    stream_phases,
    stream_truth,
)
from entropy_elbo.errors import DataError


def covariance_tolerance(c: np.ndarray, n: int, k: float = 5.0) -> np.ndarray:
    """k standard errors of each sample-covariance entry of n Gaussian draws with covariance c."""
    d = np.diag(c)
    return k * np.sqrt((np.outer(d, d) + c**2) / n)


def pca_max_log_likelihood(x: np.ndarray, h: int) -> float:
    """Maximum pPCA log-likelihood per point from the sample eigenvalues (Tipping & Bishop 1999, eq. 26)."""
    lam = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
    d = len(lam)
    sigma2 = lam[h:].mean()
    return -0.5 * (d * np.log(2 * np.pi) + np.log(lam[:h]).sum() + (d - h) * np.log(sigma2) + d)


def ppca_log_likelihood(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma2: float) -> float:
    """pPCA log-likelihood per point at given parameters (eq. 26)."""
    c = w @ w.T + sigma2 * np.eye(len(mu))
    s = np.cov(x.T, bias=True) + np.outer(x.mean(0) - mu, x.mean(0) - mu)
    return -0.5 * (len(mu) * np.log(2 * np.pi) + np.linalg.slogdet(c)[1] + np.trace(np.linalg.solve(c, s)))


# ---------------------------------------------------------------------------------------------- pPCA


def test_ppca_shape_dtype_and_seeding():
    x = ppca(500, seed=3)
    assert x.shape == (500, 10) and x.dtype == np.float32
    np.testing.assert_array_equal(x, ppca(500, seed=3))
    assert not np.allclose(x, ppca(500, seed=4))


def test_ppca_truth_matches_the_paper_parameters():
    truth = ppca_truth(seed=7)
    assert truth["W"].shape == (10, 2) and truth["mu"].shape == (10,)
    assert truth["W"].min() >= 0 and truth["W"].max() <= 1
    assert truth["mu"].min() >= 0 and truth["mu"].max() <= 1
    assert truth["sigma2"] == pytest.approx(0.01)


def test_ppca_moments_approach_the_generating_gaussian():
    n, truth = 20_000, ppca_truth(seed=1)
    x = ppca(n, seed=1).astype(np.float64)
    c = truth["W"] @ truth["W"].T + truth["sigma2"] * np.eye(10)
    np.testing.assert_array_less(np.abs(x.mean(0) - truth["mu"]), 5 * np.sqrt(np.diag(c) / n))
    np.testing.assert_array_less(np.abs(np.cov(x.T, bias=True) - c), covariance_tolerance(c, n))


def test_ppca_truth_is_near_the_maximum_likelihood():
    # The ML value exceeds the truth's by chi2_P / (2N) on average, P = 30 free parameters: ~0.00075 nats.
    n, truth = 20_000, ppca_truth(seed=2)
    x = ppca(n, seed=2).astype(np.float64)
    gap = pca_max_log_likelihood(x, 2) - ppca_log_likelihood(x, truth["W"], truth["mu"], truth["sigma2"])
    assert 0.0 <= gap < 0.005
    # Wrong parameters (another seed's W and mu) are far from the maximum.
    other = ppca_truth(seed=3)
    assert pca_max_log_likelihood(x, 2) - ppca_log_likelihood(x, other["W"], other["mu"], 0.01) > 1.0


# ---------------------------------------------------------------------------------------------- ring


def test_ring_lies_outside_the_unit_sphere_around_mu():
    mu = ppca_truth(seed=5)["mu"]
    r = np.linalg.norm(ring(5_000, seed=5) - mu, axis=1)
    assert r.min() >= 1.0 - 1e-5  # eq. 82: |x' - mu| = 1 + |x|/10
    assert np.median(r) < 1.5  # a ring: E|x|^2 = tr(W W^T) + 0.1 ~ 7 here, so r - 1 = |x|/10 is small


def test_ring_inverts_to_the_ppca_gaussian():
    # eq. 82 gives x' - mu = x (1/10 + 1/|x|), so |x| = 10 (r - 1) and x = (x' - mu) |x| / r.
    n, truth = 20_000, ppca_truth(seed=6)
    y = ring(n, seed=6).astype(np.float64) - truth["mu"]
    r = np.linalg.norm(y, axis=1, keepdims=True)
    x = y * 10.0 * (r - 1.0) / r
    c = truth["W"] @ truth["W"].T + truth["sigma2"] * np.eye(10)
    np.testing.assert_array_less(np.abs(x.mean(0)), 5 * np.sqrt(np.diag(c) / n))
    np.testing.assert_array_less(np.abs(x.T @ x / n - c), covariance_tolerance(c, n))


# ---------------------------------------------------------------------------------------------- manifold


def test_manifold_shape_and_range():
    x = manifold(2_000, seed=0)
    assert x.shape == (2_000, 100) and x.dtype == np.float32
    np.testing.assert_allclose(x.min(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.max(0), 1.0, atol=1e-6)


@pytest.mark.parametrize("k", [10, 3])
def test_manifold_columns_are_cosines_of_pairs_of_the_first_k(k):
    n = 5_000
    x = manifold(n, seed=11, k=k).astype(np.float64)
    first = x[:, :k]
    assert np.abs(np.corrcoef(first.T) - np.eye(k)).max() < 5 / np.sqrt(n)  # independent: 5 standard errors
    z = 0.35 * (first - first.mean(0)) / first.std(0) - 0.175  # undo the scaling, up to sampling error
    pairs = list(itertools.combinations_with_replacement(range(k), 2))
    candidates = np.stack([np.cos(z[:, a] ** 2 + z[:, b] ** 2) for a, b in pairs], axis=1)  # (N, P)
    corr = np.corrcoef(candidates.T, x[:, k:].T)[: len(pairs), len(pairs) :]  # (P, 100-k)
    assert np.abs(corr).max(0).min() > 0.99


def test_manifold_rejects_bad_k():
    with pytest.raises(DataError, match="k must lie"):
        manifold(10, k=100)


# ---------------------------------------------------------------------------------------------- stream


def test_stream_phases_layout():
    phases = stream_phases(50, (6, 2, 4))
    assert [(p.start, p.stop, p.dim) for p in phases] == [(0, 50, 6), (50, 100, 2), (100, 150, 4)]
    assert stream(50, seed=0).shape == (150, 10)


def test_stream_truth_is_one_orthogonal_rotation():
    truth = stream_truth(seed=4)
    np.testing.assert_allclose(truth["U"].T @ truth["U"], np.eye(10), atol=1e-12)
    np.testing.assert_allclose(truth["s"], np.linspace(1, 5, 10))


def test_stream_phase_spectra_and_rank():
    n, truth = 20_000, stream_truth(seed=4)
    x = stream(n, seed=4).astype(np.float64)
    u = truth["U"]
    for phase in stream_phases(n):
        xp = x[phase.start : phase.stop]
        cov = xp.T @ xp / n
        expected = np.where(np.arange(10) < phase.dim, truth["s"] ** 2, 0.0) + 0.01  # variance along each U_i
        np.testing.assert_allclose(np.diag(u.T @ cov @ u), expected, rtol=0.1)
        eig = np.linalg.eigvalsh(cov)
        assert (eig > 0.1).sum() == phase.dim  # numerical rank above the noise floor 0.01
        np.testing.assert_allclose(eig[: 10 - phase.dim], 0.01, rtol=0.1)


def test_stream_phases_share_one_subspace_family():
    # With one U, the 2-d phase's principal subspace lies inside the 6-d and 4-d phases' subspaces.
    n = 20_000
    x = stream(n, seed=9).astype(np.float64)
    bases = {}
    for phase in stream_phases(n):
        xp = x[phase.start : phase.stop]
        bases[phase.dim] = np.linalg.eigh(xp.T @ xp)[1][:, -phase.dim :]  # (D, dim)
    for small, big in [(2, 4), (2, 6), (4, 6)]:
        inside = np.linalg.norm(bases[big].T @ bases[small], axis=0)  # norm of each projection
        assert inside.min() > 0.99


# ---------------------------------------------------------------------------------------------- registry


def test_registry_names_and_sizes():
    assert set(SYNTHETIC) == {"ppca", "ring", "manifold", "stream"}
    for name in SYNTHETIC:
        assert make_synthetic(name, n=30, seed=1).shape[0] == 30
    np.testing.assert_array_equal(make_synthetic("ppca", 40, seed=2), ppca(40, seed=2))
    np.testing.assert_array_equal(make_synthetic("stream", 30, seed=2), stream(10, seed=2))


def test_registry_errors():
    with pytest.raises(DataError, match="manifold, ppca, ring, stream"):
        make_synthetic("mnist")
    with pytest.raises(DataError, match="positive integer"):
        make_synthetic("ppca", n=0)
    with pytest.raises(DataError, match="multiple of its 3 phases"):
        make_synthetic("stream", n=31)
