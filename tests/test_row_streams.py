"""Same seed, same number: each data row's Monte Carlo samples come from its own counter-based stream."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

from entropy_elbo.checkpoints import save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import iter_batches, make_synthetic, save_array
from entropy_elbo.elbo import estimate
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.montecarlo import RowSeed, iwae_bound, sample_latents


def test_row_draws_do_not_depend_on_how_rows_and_samples_are_split() -> None:
    draws = RowSeed(11)
    whole = draws.normals(torch.arange(50), 0, 40, 3, torch.float32)  # (S, B, H)
    rows = torch.cat([draws.normals(torch.arange(a, b), 0, 40, 3, torch.float32)
                      for a, b in ((0, 7), (7, 8), (8, 50))], dim=1)
    samples = torch.cat([draws.normals(torch.arange(50), a, b - a, 3, torch.float32) for a, b in ((0, 13), (13, 40))])
    assert torch.equal(whole, rows) and torch.equal(whole, samples)
    assert not torch.equal(whole, RowSeed(12).normals(torch.arange(50), 0, 40, 3, torch.float32))
    assert not torch.equal(whole, RowSeed(11, stream=1).normals(torch.arange(50), 0, 40, 3, torch.float32))


def test_the_extreme_bit_patterns_give_finite_normals() -> None:
    from entropy_elbo.montecarlo import uniform23

    bits = torch.tensor([-1, 0, 2**63 - 1, -(2**63)], dtype=torch.int64)  # all ones, all zeros, one bit off each
    u = uniform23(bits)
    assert u.dtype == torch.float32 and bool(((u > 0) & (u < 1)).all())
    assert u.tolist() == [1 - 2.0**-24, 2.0**-24, 0.5 - 2.0**-24, 0.5 + 2.0**-24]
    assert bool(torch.isfinite(torch.special.ndtri(u)).all())


def test_row_draws_are_independent_standard_normals() -> None:
    eps = RowSeed(3).normals(torch.arange(2000), 0, 50, 4, torch.float64).numpy()  # 400,000 draws
    assert stats.kstest(eps.ravel(), "norm").pvalue > 1e-3  # against scipy's N(0, 1) CDF
    flat = eps.reshape(-1, 4)
    corr = np.corrcoef(flat, rowvar=False)  # across latents
    assert np.abs(corr - np.eye(4)).max() < 4 / math.sqrt(len(flat))
    neighbours = np.corrcoef(eps[:, :-1].ravel(), eps[:, 1:].ravel())[0, 1]  # row i against row i + 1
    assert abs(neighbours) < 4 / math.sqrt(eps[:, 1:].size)
    nu, log_tau2 = torch.full((2000, 4), 1.5), torch.full((2000, 4), math.log(0.25))
    z = sample_latents(nu, log_tau2, 50, RowSeed(3), torch.arange(2000))
    torch.testing.assert_close(z, 1.5 + 0.5 * torch.as_tensor(eps, dtype=torch.float32))


@pytest.fixture(scope="module")
def model_and_data() -> tuple[torch.nn.Module, np.ndarray]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae3", data_dim=10, latent_dim=2, hidden=(16,))).eval()
    return model, make_synthetic("ring", n=301, seed=0)


def test_mc_elbo_and_iwae_are_the_same_for_any_batch_size(model_and_data: tuple) -> None:
    model, x = model_and_data
    # The draws are identical (above); float32 matrix kernels round a row a little differently in batches of
    # another size, hence 1e-8 and not equality (4e-10 seen); a seed changes the figures by ~1e-3.
    runs = [estimate(model, iter_batches(x, rows), samples=9, seed=4) for rows in (1, 7, 100, 301)]
    for other in runs[1:]:
        for name in ("mc_elbo", "mc_stderr", "mc_sampling_stderr"):
            assert math.isclose(getattr(other, name), getattr(runs[0], name), rel_tol=1e-8), name
        assert math.isclose(other.entropies["decoder"], runs[0].entropies["decoder"], rel_tol=1e-8)
    bounds = [iwae_bound(model, iter_batches(x, rows), samples=5, seed=4).value for rows in (3, 301)]
    assert math.isclose(bounds[0], bounds[1], rel_tol=1e-8)
    gen = estimate(model, iter_batches(x, 7), samples=9, generator=torch.Generator().manual_seed(4))
    assert gen.mc_elbo != runs[0].mc_elbo  # a torch generator draws in batch order: another sample
    assert abs(gen.mc_elbo - runs[0].mc_elbo) < 5 * math.hypot(gen.mc_sampling_stderr, runs[0].mc_sampling_stderr)


def test_the_cli_prints_the_same_number_whatever_the_batch_size_or_free_memory(tmp_path, model_and_data) -> None:
    model, x = model_and_data
    save_checkpoint(model, tmp_path / "m.safetensors")
    save_array(x, tmp_path / "x.npy")
    base = ["estimate", str(tmp_path / "m.safetensors"), "--data", str(tmp_path / "x.npy"), "--samples", "9",
            "--iwae", "4", "--seed", "4"]
    tables = set()
    for extra in ([], ["--batch-size", "5"], ["--batch-size", "64"]):  # [] : chosen from free memory
        res = CliRunner().invoke(main, [*base, *extra])
        assert res.exit_code == 0, res.output
        tables.add(res.stdout)
        figures = json.loads(CliRunner().invoke(main, [*base, *extra, "--json"]).stdout)
        assert math.isclose(figures["mc_elbo"], estimate(model, [x], samples=9, seed=4).mc_elbo, rel_tol=1e-8)
    assert len(tables) == 1  # the printed tables are identical, digit for digit


def test_the_chunked_draws_are_the_plain_definition_bit_for_bit() -> None:
    """normals() skips _mix64's last step and runs in cache-sized chunks: the same float32s as the definition."""
    from entropy_elbo.montecarlo import _GAMMA, DRAWS_PER_CHUNK, _mix64, _signed, uniform23

    cases = ((0, 0, 0, 0, 7, 5, 3), (11, 1, 123, 9, 31, 97, 20), (2**40 + 3, 2, 10**9, 1000, 3, 2 * DRAWS_PER_CHUNK, 1))
    for seed, stream, first_row, first_sample, samples, b, h in cases:
        rows = torch.arange(first_row, first_row + b)
        key = _mix64(torch.tensor(_signed(seed * _GAMMA + stream + 1), dtype=torch.int64))
        row_key = _mix64(key + rows * _GAMMA).reshape(1, -1, 1)
        counter = torch.arange(first_sample * h, (first_sample + samples) * h).reshape(samples, 1, h) + 1
        want = torch.special.ndtri(uniform23(_mix64(row_key + counter * _GAMMA)))  # (S, B, H)
        got = RowSeed(seed, stream).normals(rows, first_sample, samples, h, torch.float32)
        assert got.dtype == torch.float32 and torch.equal(got, want), (seed, stream)
