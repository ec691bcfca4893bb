"""`EntropyMonitor` under a real pytorch-lightning Trainer: metrics reach the CSV logger under stable names, equal
`estimate`/`collapse` of the saved .ckpt, training is untouched, the VAE is found inside a LightningModule, DDP."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from monitor_helpers import BNVAE, user_loss
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor, nn

from entropy_elbo.checkpoints import LoadOptions, load_model
from entropy_elbo.data import make_synthetic, ppca
from entropy_elbo.elbo import estimate
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.latents import collapse
from entropy_elbo.lightning import EntropyMonitor, find_vae
from entropy_elbo.monitor import Monitor, MonitorWarning
from entropy_elbo.runs import read_log

H = 3


class LitVAE(BNVAE, pl.LightningModule):
    """A user's LightningModule that is itself the VAE (batch norm, dropout, encode/decode, learned ln sigma^2)."""

    def training_step(self, batch: list[Tensor], _: int) -> Tensor:
        return user_loss(self, batch[0])  # noise from the global RNG, as most users draw it

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=5e-3)


class Wrapper(pl.LightningModule):
    """PyTorch-VAE's layout: the LightningModule keeps the VAE as `self.model`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.encode = lambda x: x  # type: ignore[method-assign]
        self.head = nn.Linear(2, 2)


@pytest.fixture(scope="module")
def data() -> Tensor:
    return torch.as_tensor(make_synthetic("ppca", n=400, seed=5))


def fit(data: Tensor, callbacks: list[pl.Callback], folder: Path, ckpt_path: Path | None = None,
        **trainer_kwargs: object) -> LitVAE:
    pl.seed_everything(0, verbose=False)
    model = LitVAE()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=100, shuffle=True)
    settings = {"accelerator": "cpu", "devices": 1, "max_epochs": 3, "enable_checkpointing": False, **trainer_kwargs}
    trainer = pl.Trainer(logger=CSVLogger(folder), callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1, **settings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|litlogger).*")
        trainer.fit(model, loader, ckpt_path=ckpt_path)
    model.trainer_ = trainer  # for the test to save a checkpoint from
    return model


def csv_rows(folder: Path) -> list[dict[str, str]]:
    (path,) = folder.glob("lightning_logs/version_*/metrics.csv")
    with open(path) as fh:
        return [r for r in csv.DictReader(fh) if r.get("entropy_elbo/entropy_elbo")]


def test_logged_figures_reach_the_csv_logger_and_equal_estimate_of_the_saved_ckpt(data: Tensor,
                                                                                   tmp_path: Path) -> None:
    callback = EntropyMonitor(data[:200], every_n_epochs=1, samples=3, seed=4, log=tmp_path / "m.jsonl")
    model = fit(data, [callback], tmp_path)
    logged = csv_rows(tmp_path)
    assert [int(r["epoch"]) for r in logged] == [0, 1, 2] and len(callback.rows) == 3
    names = ["entropy_elbo/entropy_elbo", "entropy_elbo/active_latents", "entropy_elbo/mc_elbo", "entropy_elbo/r",
             *[f"entropy_elbo/latent_entropy/{h}" for h in range(H)]]
    for row, csv_row in zip(callback.rows, logged, strict=True):
        assert float(csv_row["entropy_elbo/entropy_elbo"]) == pytest.approx(row["entropy_elbo"], abs=1e-9)
        assert float(csv_row["entropy_elbo/active_latents"]) == row["active_latents"]
        assert all(csv_row[n] != "" for n in names)
    ckpt = tmp_path / "last.ckpt"
    model.trainer_.save_checkpoint(ckpt)
    loaded = load_model(ckpt, options=LoadOptions(model=f"{__file__}:LitVAE")).model
    est = estimate(loaded, [data[:200].numpy()], samples=3, generator=torch.Generator().manual_seed(4))
    col = collapse(loaded, [data[:200].numpy()])
    last = logged[-1]
    for name, want in [("entropy_elbo", est.entropy_elbo), ("mc_elbo", est.mc_elbo), ("r", est.stationarity["r"]),
                       ("encoder_entropy", est.entropies["encoder"]), ("decoder_entropy", est.entropies["decoder"]),
                       *[(f"latent_entropy/{h}", col.mean_entropy[h]) for h in range(H)],
                       *[(f"a/{h}", est.stationarity["a"][h]) for h in range(H)]]:
        assert float(last[f"entropy_elbo/{name}"]) == pytest.approx(want, abs=1e-9), name
    assert float(last["entropy_elbo/active_latents/active_units"]) == H - col.counts["active_units"]
    assert (tmp_path / "m.jsonl").read_text().count("\n") == 3


def test_training_under_the_callback_is_bit_identical(data: Tensor, tmp_path: Path) -> None:
    plain = fit(data, [], tmp_path / "a")
    watched = fit(data, [EntropyMonitor(data[:150], samples=2)], tmp_path / "b")
    a, b = plain.state_dict(), watched.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # incl. batch norm running stats


def test_every_n_epochs_and_where_the_vae_is(data: Tensor, tmp_path: Path) -> None:
    callback = EntropyMonitor(data[:100], every_n_epochs=2, samples=0)
    fit(data, [callback], tmp_path, max_epochs=5)
    assert [r["epoch"] for r in callback.rows] == [2, 4] and callback.rows[0]["mc_elbo"] is None
    wrapper = Wrapper()
    assert find_vae(wrapper) is wrapper.model and find_vae(wrapper, "head") is wrapper.head
    with pytest.raises(EntropyElboError, match="module='NAME'"):
        find_vae(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(EntropyElboError, match="every_n_epochs: got 0"):
        EntropyMonitor(data, every_n_epochs=0)


def test_a_resumed_run_does_not_warn_twice(data: Tensor, tmp_path: Path) -> None:
    options = LoadOptions(decoder_variance=0.5)  # the learned sigma^2 set aside: a fixed variance, warned at once
    first = EntropyMonitor(data[:100], samples=1, options=options)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    with pytest.warns(MonitorWarning, match="fixed"):
        fit(data, [first, saver], tmp_path / "a", max_epochs=2, enable_checkpointing=True)
    assert [len(r["warnings"]) for r in first.rows] == [1, 0]
    resumed = EntropyMonitor(data[:100], samples=1, options=options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorWarning)
        fit(data, [resumed, ModelCheckpoint(dirpath=tmp_path / "ckpt2")], tmp_path / "b", max_epochs=3,
            ckpt_path=tmp_path / "ckpt" / "last.ckpt", enable_checkpointing=True)
    assert [r["epoch"] for r in resumed.rows] == [3] and resumed.rows[0]["warnings"] == []


def test_without_either_lightning_the_import_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "entropy_elbo.lightning")
    with pytest.raises(ImportError, match=r"pip install 'entropy-elbo\[lightning\]'") as err:
        importlib.import_module("entropy_elbo.lightning")
    assert isinstance(err.value, EntropyElboError) and "\n" not in str(err.value)


def test_ddp_two_processes_log_the_one_process_figures(data: Tensor, tmp_path: Path) -> None:
    """Two CPU processes (gloo, ddp_spawn): each measures its half of the batch, the sums are added, rank 0 logs."""
    callback = EntropyMonitor(data[:201], samples=2)
    model = fit(data, [callback], tmp_path, devices=2, strategy="ddp_spawn")
    last = csv_rows(tmp_path)[-1]
    est, col = Monitor(model, data[:201], samples=2).measure()  # one process, the trained weights
    assert float(last["entropy_elbo/entropy_elbo"]) == pytest.approx(est.entropy_elbo, abs=1e-9)
    assert float(last["entropy_elbo/encoder_entropy"]) == pytest.approx(est.entropies["encoder"], abs=1e-9)
    for h in range(H):
        assert float(last[f"entropy_elbo/latent_entropy/{h}"]) == pytest.approx(col.mean_entropy[h], abs=1e-9)
        assert float(last[f"entropy_elbo/a/{h}"]) == pytest.approx(est.stationarity["a"][h], abs=1e-9)
    # Monte Carlo: rank r samples with seed + r, another valid draw of the same figure
    assert abs(float(last["entropy_elbo/mc_elbo"]) - est.mc_elbo) < 5 * est.mc_stderr


def test_the_lightning_example_logs_the_final_models_figures(tmp_path: Path) -> None:
    examples = Path(__file__).parents[1] / "examples"
    spec = importlib.util.spec_from_file_location("monitor_lightning", examples / "monitor_lightning.py")
    example = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(example)
        model, callback, _ = example.main(["--epochs", "2", "--rows", "500", "--out", str(tmp_path)])
    logged = csv_rows(tmp_path)
    assert [int(r["epoch"]) for r in logged] == [0, 1]
    assert read_log(tmp_path / "monitor_lightning.jsonl") == callback.rows
    held_out = torch.as_tensor(ppca(1500, seed=0)[500:])  # the example's 1,000 held-out rows
    est, col = Monitor(model.vae, held_out, samples=0).measure()
    assert float(logged[-1]["entropy_elbo/entropy_elbo"]) == pytest.approx(est.entropy_elbo, abs=1e-9)
    assert float(logged[-1]["entropy_elbo/active_latents"]) == col.h - col.counts["entropy"]


def test_a_warning_names_the_users_line_that_called_fit(data: Tensor, tmp_path: Path) -> None:
    with pytest.warns(MonitorWarning, match="fixed") as caught:
        fit(data[:200], [EntropyMonitor(data[:150], samples=2, options=LoadOptions(decoder_variance=0.5))], tmp_path,
            max_epochs=1)
    assert {Path(w.filename).name for w in caught if issubclass(w.category, MonitorWarning)} == {Path(__file__).name}


def test_the_callback_is_a_callback_of_each_lightning_installed() -> None:
    flavours = [importlib.import_module(n) for n in ("lightning.pytorch", "pytorch_lightning")
                if importlib.util.find_spec(n.split(".")[0]) is not None]
    assert flavours and all(issubclass(EntropyMonitor, f.Callback) for f in flavours)


def test_the_lightning_package_trainer_takes_the_callback(data: Tensor) -> None:
    lit = pytest.importorskip("lightning")  # `import lightning as L`, as README writes

    class LitL(BNVAE, lit.LightningModule):
        training_step = LitVAE.training_step
        configure_optimizers = LitVAE.configure_optimizers

    monitor = EntropyMonitor(data[:150], samples=2)
    trainer = lit.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, callbacks=[monitor],
                          enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|litlogger).*")
        trainer.fit(LitL(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data[:200]), batch_size=100))
    assert [r["epoch"] for r in monitor.rows] == [1, 2]
    assert trainer.callback_metrics["entropy_elbo/entropy_elbo"] == pytest.approx(monitor.rows[-1]["entropy_elbo"])
