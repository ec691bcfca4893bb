"""Streaming model selection (Appendix A): the stacked trainer against one LinearVAE + Adam per candidate,
the BIC against its formula, and the selection on a reduced synthetic stream."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from entropy_elbo import entropies
from entropy_elbo.cli import main
from entropy_elbo.data import stream, stream_phases
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.select import (
    initial_models,
    phase_segments,
    select_stream,
    summarize,
    window_segments,
)


def reference_run(x: np.ndarray, latents: tuple[int, ...], batch_size: int, samples: int, lr: float, seed: int):
    """One float64 LinearVAE and one torch Adam per candidate, autograd gradients, the samples drawn as in
    select_stream (one (K, S, B, H_max) draw per batch); returns per-batch ELBOs (T, K) and the models."""
    models = [m.double() for m in initial_models(latents, x.shape[1], seed)]
    xt = torch.as_tensor(x, dtype=torch.float64)
    batches = xt.split(batch_size)
    with torch.no_grad():
        for m in models:
            m.mu0.copy_(batches[0].mean(0))
    opts = [torch.optim.Adam(m.parameters(), lr=lr) for m in models]
    gen = torch.Generator().manual_seed(seed)
    sampled, closed = [], []
    for xb in batches:
        eps = torch.randn((len(latents), samples, len(xb), max(latents)), generator=gen, dtype=torch.float64)
        row_s, row_c = [], []
        for k, (m, opt) in enumerate(zip(models, opts, strict=True)):
            nu, log_tau2 = m.encode(xb)
            z = nu + (0.5 * log_tau2).exp() * eps[k, :, :, : m.latent_dim]  # (S, B, H)
            mu, log_sigma2 = m.decode(z)
            ll = entropies.gaussian_log_likelihood(xb, mu, log_sigma2)  # (S, B)
            f = (ll.mean(0) - entropies.kl_to_prior(nu, log_tau2)).mean()
            d = xb.shape[1]
            # eq. 20 written out: 0.5 sum_h log tau_h^2 - (D/2) log(2 pi e sigma^2)
            lt, ls = m.log_tau2.detach(), m.log_sigma2.detach()
            row_c.append(float(0.5 * lt.sum() - 0.5 * d * (math.log(2 * math.pi * math.e) + ls)))
            row_s.append(float(f.detach()))
            opt.zero_grad()
            (-f).backward()
            opt.step()
        sampled.append(row_s)
        closed.append(row_c)
    return np.array(sampled), np.array(closed), models


def test_stacked_training_matches_one_linear_vae_and_adam_per_candidate() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((153, 5)) @ rng.standard_normal((5, 5)) + 2.0  # 15 full batches and one of 3 rows
    latents, batch, samples, lr = (3, 1, 2), 10, 7, 0.02
    sel = select_stream(iter(np.array_split(x, 4)), latents, batch_size=batch, samples=samples, lr=lr, seed=3,
                        dtype=torch.float64)
    ref_sampled, ref_closed, ref_models = reference_run(x, latents, batch, samples, lr, seed=3)
    assert sel.rows.tolist() == [10] * 15 + [3]
    np.testing.assert_allclose(sel.elbo_sampled, ref_sampled, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sel.elbo_entropy, ref_closed, rtol=1e-9, atol=1e-9)
    for got, want in zip(sel.models, ref_models, strict=True):
        assert got.latent_dim == want.latent_dim
        for (name, a), (_, b) in zip(got.named_parameters(), want.named_parameters(), strict=True):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().double().numpy(), atol=2e-6, err_msg=name)


def test_bic_is_eq27_with_n_the_rows_of_each_batch() -> None:
    x = stream(40, seed=2)[:117]  # 11 batches of 10 rows, one of 7
    sel = select_stream([x], (2, 5), samples=3, seed=0)
    for t in (0, 5, 11):
        for k, h in enumerate((2, 5)):
            n = int(sel.rows[t])
            assert sel.bic_entropy[t, k] == pytest.approx(entropies.bic(n, sel.elbo_entropy[t, k], h * 10 + 1))
            assert sel.bic_sampled[t, k] == pytest.approx(entropies.bic(n, sel.elbo_sampled[t, k], h * 10 + 1))
    assert sel.rows[-1] == 7 and sel.start[-1] == 110


def test_chunking_of_a_live_source_does_not_change_the_result() -> None:
    x = stream(100, seed=4)
    whole = select_stream([x], (1, 3), samples=5, seed=7)
    pieces = (x[i:j] for i, j in [(0, 3), (3, 3), (3, 150), (150, 151), (151, 300)])
    chunked = select_stream(pieces, (1, 3), samples=5, seed=7)
    np.testing.assert_array_equal(whole.elbo_sampled, chunked.elbo_sampled)
    np.testing.assert_array_equal(whole.elbo_entropy, chunked.elbo_entropy)


@pytest.fixture(scope="module")
def reduced_stream() -> tuple[np.ndarray, object]:
    """The paper's stream at a fifth of its length and five times its learning rate (about 5 s)."""
    x = stream(20_000, seed=0)
    return x, select_stream([x], (2, 4, 6), lr=0.01, seed=0)


def test_entropy_bic_picks_the_true_dimension_in_every_phase_with_far_less_noise(reduced_stream) -> None:
    x, sel = reduced_stream
    phases = stream_phases(20_000)
    summaries = summarize(sel, phase_segments([p.stop - p.start for p in phases], [p.dim for p in phases]), 500)
    for s in summaries:
        assert s.tail == 500
        assert s.entropy.selected == s.segment.true_dim
        assert s.entropy.agreement == 1.0  # every batch of the tail alone picks the true H
        assert np.all(s.sampled.std > 2.5 * s.entropy.std)
        assert np.median(s.sampled.std / s.entropy.std) > 5


def test_a_model_far_from_stationarity_is_flagged() -> None:
    """After 100 batches from a random start the two ELBOs differ by nats; eq. 20 does not hold there yet."""
    sel = select_stream([stream(1000, seed=0)], (2, 6), samples=10)
    first = summarize(sel, phase_segments([1000] * 3, [6, 2, 4]), 50)[0]
    gap = sel.elbo_sampled[50:100].mean(0) - sel.elbo_entropy[50:100].mean(0)
    np.testing.assert_allclose(first.elbo_gap, gap, rtol=1e-12)
    assert np.all(np.abs(gap) > 1.0)
    assert not first.near_stationary.any()


def test_windows_cover_the_stream_in_order() -> None:
    x = stream(100, seed=1)
    sel = select_stream([x], (1, 2), samples=2)
    segments = window_segments(sel, 7)
    assert [s.start for s in segments] == list(range(0, 300, 70))
    assert segments[-1].stop == 300
    summaries = summarize(sel, segments, tail=10)
    assert [s.batches for s in summaries] == [7, 7, 7, 7, 2]
    assert [s.tail for s in summaries] == [3, 3, 3, 3, 1]


def test_bad_settings_are_our_errors() -> None:
    x = stream(10)
    with pytest.raises(EntropyElboError, match="--latents"):
        select_stream([x], (2, 2))
    with pytest.raises(EntropyElboError, match="no rows"):
        select_stream([], (2,))
    with pytest.raises(EntropyElboError, match="chunk 1: rows have 3 values"):
        select_stream([x, x[:, :3]], (2,))
    bad = x.copy()
    bad[4, 2] = np.nan
    with pytest.raises(EntropyElboError, match="row 4 holds NaN"):
        select_stream([bad], (2,))
    sel = select_stream([x], (1,), samples=1)
    with pytest.raises(EntropyElboError, match="add up"):
        summarize(sel, phase_segments([10, 10]))


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_select_json_matches_the_library(tmp_path) -> None:
    x = stream(400, seed=5)
    path = tmp_path / "s.npy"
    np.save(path, x)
    args = ["select", "--data", str(path), "--latents", "1,3", "--samples", "4", "--phases", "600,600",
            "--true-dims", "6,2", "--tail", "20", "--seed", "2", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    sel = select_stream([x], (1, 3), samples=4, seed=2)
    want = summarize(sel, phase_segments([600, 600], [6, 2]), 20)
    assert got["batches"] == 120 and got["rows"] == 1200 and got["latents"] == [1, 3]
    assert "n = 10 rows" in got["n"]
    for g, w in zip(got["segments"], want, strict=True):
        assert g["true_dim"] == w.segment.true_dim and g["tail_batches"] == 20
        assert g["entropy_bic"]["selected"] == w.entropy.selected
        assert g["sampled_bic"]["mean"]["3"] == pytest.approx(w.sampled.mean[1], rel=1e-6)
        assert g["entropy_bic"]["std"]["1"] == pytest.approx(w.entropy.std[0], rel=1e-6)


def test_cli_select_table_and_plot(tmp_path) -> None:
    path = tmp_path / "s.npy"
    np.save(path, stream(200, seed=5))
    png = tmp_path / "bic.png"
    res = CliRunner().invoke(main, ["select", "--data", str(path), "--latents", "2,4", "--samples", "2",
                                    "--phases", "stream", "--plot", str(png), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "phase 3" in res.stdout and "entropy BIC" in res.stdout
    assert "not near a stationary point" in res.stderr  # 20 batches per phase cannot converge
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 500


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--latents", "2,x"], "--latents"),
        (["--phases", "100,100"], "add up to 200 rows but"),
        (["--phases", "300", "--true-dims", "1,2"], "--true-dims: 2 values for 1 phases"),
        (["--batch-size", "0"], "--batch-size"),
        (["--plot", "/nonexistent/dir/x.png"], "does not exist"),
    ],
)
def test_cli_select_bad_input_is_one_line(tmp_path, extra: list[str], message: str) -> None:
    path = tmp_path / "s.npy"
    np.save(path, stream(100, seed=5))
    res = CliRunner().invoke(main, ["select", "--data", str(path), "--samples", "1", *extra])
    assert res.exit_code == 1
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_plot_without_matplotlib_says_how_to_install(monkeypatch) -> None:
    from entropy_elbo import report

    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(EntropyElboError, match="pip install"):
        report.import_pyplot()
