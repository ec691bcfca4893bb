"""`Monitor` in a plain training loop: its figures against `estimate`/`collapse` on a saved checkpoint of the same
state, training untouched by it (weights, batch norm statistics, train/eval flags, RNG states), its warnings and
its JSON-lines log."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from monitor_helpers import BNVAE, user_loss
from torch import Tensor, nn

from entropy_elbo.checkpoints import LoadOptions, load_model, save_checkpoint
from entropy_elbo.cli import main
from entropy_elbo.data import make_synthetic, ppca
from entropy_elbo.elbo import estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.latents import collapse
from entropy_elbo.models import ModelConfig, build_model
from entropy_elbo.monitor import Monitor, MonitorWarning
from entropy_elbo.runs import read_log


def fit(model: BNVAE, x: Tensor, epochs: int, monitor: Monitor | None = None) -> list[dict[str, object]]:
    """A plain loop: shuffled batches (global RNG), dropout (global RNG), noise from the user's own generator."""
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(2)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    rows = []
    model.train()
    model.decoder.eval()  # a user's own flag on a sub-module (no effect here) must survive the monitor's eval mode
    for epoch in range(epochs):
        for idx in torch.randperm(len(x)).split(100):
            loss = user_loss(model, x[idx], gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if monitor is not None:
            state = (torch.get_rng_state(), gen.get_state())
            rows.append(monitor.step(epoch + 1))
            assert torch.equal(torch.get_rng_state(), state[0]) and torch.equal(gen.get_state(), state[1])
            assert model.training and model.encoder[1].training and not model.decoder.training  # flags as they were
    return rows


@pytest.fixture(scope="module")
def data() -> Tensor:
    return torch.as_tensor(make_synthetic("ppca", n=600, seed=3))


def test_training_is_bit_identical_with_and_without_the_monitor(data: Tensor) -> None:
    torch.manual_seed(0)
    plain = BNVAE()
    watched = BNVAE()
    watched.load_state_dict(plain.state_dict())
    fit(plain, data, 3)
    fit(watched, data, 3, Monitor(watched, data[:200], samples=3))
    a, b = plain.state_dict(), watched.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # incl. batch norm running stats
    plain.eval()
    watched.eval()
    with torch.no_grad():
        assert all(torch.equal(p, q) for p, q in zip(plain.encode(data), watched.encode(data), strict=True))


def test_figures_equal_estimate_and_collapse_of_a_saved_checkpoint_of_a_user_class(data: Tensor,
                                                                                    tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = BNVAE()
    batch = data[:250]
    rows = fit(model, data, 3, Monitor(model, batch, samples=4, seed=7))
    torch.save(model.state_dict(), tmp_path / "user.pt")
    loaded = load_model(tmp_path / "user.pt", options=LoadOptions(model=f"{__file__}:BNVAE")).model
    est = estimate(loaded, [batch.numpy()], samples=4, generator=torch.Generator().manual_seed(7))
    col = collapse(loaded, [batch.numpy()])
    check_row(rows[-1], est, col)


def test_figures_equal_estimate_and_collapse_for_our_own_vae1(data: Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=4, hidden=(16,)))
    mon = Monitor(model, data[:300].numpy(), samples=2, seed=3, r_patience=100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        nu, log_tau2 = model.encode(data)
        opt.zero_grad()
        (nu.pow(2).mean() + (log_tau2 + 1).pow(2).mean()).backward()  # any step that moves the encoder
        opt.step()
        row = mon.step()
    save_checkpoint(model, tmp_path / "vae1.safetensors")
    loaded = load_model(tmp_path / "vae1.safetensors").model
    est = estimate(loaded, [data[:300].numpy()], samples=2, generator=torch.Generator().manual_seed(3))
    check_row(row, est, collapse(loaded, [data[:300].numpy()]))
    assert row["epoch"] == 5 and mon.introspection is None  # our own model: used as it is


def check_row(row: dict[str, object], est: object, col: object) -> None:
    """Every monitored figure equals the one from the checkpoint's estimate and collapse, to 1e-9 nats."""
    pairs = [(row["entropy_elbo"], est.entropy_elbo), (row["mc_elbo"], est.mc_elbo), (row["mc_stderr"], est.mc_stderr),
             (row["r"], est.stationarity["r"]), (row["gap"], est.stationarity["gap"]),
             *[(row[f"{k}_entropy"], est.entropies[k]) for k in ("encoder", "prior", "decoder")],
             *zip(row["a"], est.stationarity["a"], strict=True),
             *zip(row["latent_entropies"], col.mean_entropy, strict=True)]
    for got, want in pairs:
        assert got == pytest.approx(want, abs=1e-9, rel=0)
    active = {m: col.h - c for m, c in col.counts.items()}
    assert row["active_latents_by_metric"] == active and row["active_latents"] == active["entropy"]
    assert sum(row["latent_entropies"]) == pytest.approx(row["encoder_entropy"], abs=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit internals
def test_wrappers_are_seen_through(data: Tensor) -> None:
    torch.manual_seed(0)
    model = BNVAE()
    plain = Monitor(model, data[:100], samples=2).step()
    wrapped = Monitor(torch.compile(nn.DataParallel(model)), data[:100], samples=2)
    assert wrapped.module is model and wrapped.step() == {**plain, "seconds": ANY, "wall_time": ANY}


def test_warnings_come_once_each(data: Tensor) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2, hidden=(8,)))
    with torch.no_grad():
        model.fc_var.weight.zero_()
        model.fc_var.bias.fill_(-3.0)  # tau^2 = e^-3: entropy 0.92 nats, both latents active
        model.log_sigma2.fill_(4.0)  # sigma^2 far above the residual variance: r << 1
    mon = Monitor(model, data[:200], samples=1, r_patience=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = mon.step()
        with torch.no_grad():
            model.fc_var.bias[1] = 0.0  # latent 1: tau^2 = 1, entropy 1.419 nats > 1.0: it collapses
        second, third = mon.step(), mon.step()
    assert first["warnings"] == [] and first["active_latents"] == 2
    assert [w.split(":")[1].strip() for w in second["warnings"]] == ["latent 1 collapsed", "r = " + f"{second['r']:.4f}"
                                                                     + " (|r - 1| > 0.2 at 2 steps in a row)"]
    assert third["warnings"] == [] and third["active_latents"] == 1
    assert [str(w.message) for w in caught if w.category is MonitorWarning] == second["warnings"]


def test_a_fixed_decoder_variance_is_said_once_and_the_entropy_elbo_withheld(data: Tensor) -> None:
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2, hidden=(8,), decoder_variance="fixed"))
    mon = Monitor(model, data[:100], samples=2)
    with pytest.warns(MonitorWarning, match="fixed"):
        first = mon.step()
    assert first["entropy_elbo"] is None and first["mc_elbo"] is not None and len(first["warnings"]) == 1
    assert mon.step()["warnings"] == []


class MSEVAE(nn.Module):
    """A PyTorch-VAE-like module with no decoder variance at all (trained with an MSE loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_mu, self.fc_var, self.decoder = nn.Linear(10, 2), nn.Linear(10, 2), nn.Linear(2, 10)

    def encode(self, x: Tensor) -> list[Tensor]:
        return [self.fc_mu(x), self.fc_var(x)]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


def test_a_module_without_a_learned_variance_gets_no_made_up_mc_elbo(data: Tensor) -> None:
    mon = Monitor(MSEVAE(), data[:100], samples=5)
    with pytest.warns(MonitorWarning, match="decoder_variance=VALUE"):
        row = mon.step()
    assert row["mc_elbo"] is None and row["entropy_elbo"] is None and row["mc_samples"] == 0
    given = Monitor(mon.module, data[:100], samples=5, options=LoadOptions(decoder_variance=0.5))
    with pytest.warns(MonitorWarning, match="fixed"):
        at_half = given.step()
    assert at_half["sigma2"] == pytest.approx(0.5) and at_half["mc_samples"] == 5
    best = Monitor(mon.module, data[:100], samples=5, options=LoadOptions(decoder_variance="optimal"))
    with pytest.warns(MonitorWarning, match="fixed"):
        at_best = best.step()  # the same samples: sigma*^2 = 0.5 r, and the MC ELBO there is the higher one
    assert at_best["sigma2"] == pytest.approx(0.5 * at_half["r"], rel=1e-12) and at_best["r"] == 1.0
    assert at_best["mc_elbo"] > at_half["mc_elbo"]


def test_the_log_is_a_run_log_that_plot_draws(data: Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = BNVAE()
    log = tmp_path / "monitor.jsonl"
    rows = fit(model, data, 2, Monitor(model, data[:100], log=log))
    assert read_log(log) == rows
    entropy_only = tmp_path / "entropy_only.jsonl"  # samples=0: no Monte Carlo ELBO, still drawn
    Monitor(model, data[:100], samples=0, log=entropy_only).step()
    for path in (log, entropy_only):
        out = path.with_suffix(".png")
        result = CliRunner().invoke(main, ["plot", str(path), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("data", "kwargs", "message"), [
    ([[1.0, 2.0]], {}, "data: got list"),
    (np.zeros((0, 10), dtype=np.float32), {}, r"data: got shape \(0, 10\)"),
    (torch.zeros(4, 10, dtype=torch.int64), {}, "data: dtype int64"),
    (torch.zeros(4, 10), {"samples": -1}, "samples: got -1"),
    (torch.zeros(4, 10), {"log": "/no/such/folder/m.jsonl"}, "folder /no/such/folder does not exist"),
    (torch.zeros(4, 10), {"threshold": 1.0, "delta": 0.4}, "give one of them"),
    (torch.zeros(4, 10), {"samples": 0, "options": LoadOptions(decoder_variance="optimal")}, "needs samples >= 1"),
])
def test_bad_input_is_one_line(data: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(EntropyElboError, match=message):
        Monitor(MSEVAE(), data, **kwargs)


def test_the_example_loop_logs_the_final_models_figures(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("monitor_loop", Path(__file__).parents[1] / "examples" /
                                                  "monitor_loop.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, mon = example.main(["--epochs", "2", "--rows", "500", "--out", str(tmp_path)])
    assert read_log(tmp_path / "monitor.jsonl") == mon.rows and [r["epoch"] for r in mon.rows] == [1, 2]
    held_out = torch.as_tensor(ppca(1500, seed=0)[500:])  # the example's 1,000 held-out rows
    est = estimate(load_as_user_class(model, tmp_path), [held_out.numpy()], samples=0)
    assert mon.rows[-1]["entropy_elbo"] == pytest.approx(est.entropy_elbo, abs=1e-9)


def load_as_user_class(model: nn.Module, folder: Path) -> object:
    """The model saved as a state_dict and read back through --model, as `estimate` would read it."""
    torch.save(model.state_dict(), folder / "model.pt")
    source = Path(__file__).parents[1] / "examples" / "monitor_loop.py"
    return load_model(folder / "model.pt", options=LoadOptions(model=f"{source}:MyVAE")).model
