"""Progress lines: fitted to the terminal (least important figures dropped first), ETA, plain lines in logs;
output files take the umask."""

from __future__ import annotations

import io

import pytest

from entropy_elbo import progress
from entropy_elbo.progress import ProgressLine, clock, fit_line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    return c


FIGURES = ["ELBO -12.4557 nats/point", "gap +0.04%", "active latents 2/2", "entropy ELBO -12.4601"]


def test_fit_line_drops_the_least_important_figures_first() -> None:
    head = "epoch 5/300 ############"
    assert fit_line(head, FIGURES, 200) == ("epoch 5/300 ############  ELBO -12.4557 nats/point  gap +0.04%  "
                                            "active latents 2/2  entropy ELBO -12.4601")
    assert fit_line(head, FIGURES, 79) == "epoch 5/300 ############  ELBO -12.4557 nats/point  gap +0.04%"
    assert fit_line(head, FIGURES, 50) == "epoch 5/300 ############  ELBO -12.4557 nats/point"
    assert fit_line(head, FIGURES, 20) == "epoch 5/300 ########"  # the count always shows
    assert clock(187) == "0:03:07" and clock(3 * 3600 + 61) == "3:01:01"


def test_a_terminal_line_is_redrawn_at_its_width_with_an_eta(fake_clock: Clock) -> None:
    out = io.StringIO()
    line = ProgressLine(300, "epoch", stream=out, terminal=True, width=80)
    fake_clock.now += 10.0  # 5 epochs in 10 s: 295 left take 590 s
    line.update(5, FIGURES)
    shown = "epoch 5/300 ------------  ETA 0:09:50  ELBO -12.4557 nats/point  gap +0.04%"
    assert out.getvalue() == "\r" + shown.ljust(79)
    fake_clock.now += 590.0
    line.update(300, FIGURES)
    line.close()
    last = out.getvalue().split("\r")[-1]
    assert last == "epoch 300/300 ############  done in 0:10:00  ELBO -12.4557 nats/point".ljust(79) + "\n"


def test_a_log_gets_a_plain_line_every_interval_and_at_the_end(fake_clock: Clock) -> None:
    out = io.StringIO()
    line = ProgressLine(10, "epoch", stream=out, terminal=False, interval=30.0, done=2)  # resumed after 2
    for epoch in range(3, 11):
        fake_clock.now += 10.0
        line.update(epoch, ["ELBO -1.0000 nats/point"])
    assert out.getvalue().splitlines() == [
        "epoch 3/10  0:00:10 elapsed, ETA 0:01:10  ELBO -1.0000 nats/point",
        "epoch 6/10  0:00:40 elapsed, ETA 0:00:40  ELBO -1.0000 nats/point",
        "epoch 9/10  0:01:10 elapsed, ETA 0:00:10  ELBO -1.0000 nats/point",
        "epoch 10/10  done in 0:01:20  ELBO -1.0000 nats/point",
    ]
    quiet = io.StringIO()
    silent = ProgressLine(10, "epoch", stream=quiet, terminal=True, quiet=True)
    silent.update(5, FIGURES)
    silent.close()
    assert quiet.getvalue() == ""


def test_output_files_take_the_umask(tmp_path) -> None:  # noqa: ANN001
    import os

    from click.testing import CliRunner

    from entropy_elbo.cli import main

    old = os.umask(0o027)
    try:
        res = CliRunner().invoke(main, ["data", "ppca", "-n", "50", "--out", str(tmp_path / "x.npy")])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["train", "linear", "--data", str(tmp_path / "x.npy"), "--epochs", "1",
                                        "--quiet", "--out", str(tmp_path / "run")])
        assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    for path in (tmp_path / "x.npy", *(tmp_path / "run").iterdir()):
        assert (path.stat().st_mode & 0o777) == 0o640, path  # 0o666 less the umask 0o027, not mkstemp's 0o600


def test_long_work_shows_progress_after_its_delay_and_short_work_nothing(fake_clock: Clock) -> None:
    out = io.StringIO()
    line = ProgressLine(100, "rows x samples", stream=out, terminal=False, delay=2.0)
    fake_clock.now += 1.0
    line.update(10)
    assert out.getvalue() == ""  # under 2 s: nothing
    fake_clock.now += 3.0
    line.update(40)
    assert out.getvalue() == "rows x samples 40/100  0:00:04 elapsed, ETA 0:00:06\n"
    short = io.StringIO()
    quick = ProgressLine(100, "rows", stream=short, terminal=False, delay=2.0)
    quick.update(100)  # done within the delay
    assert short.getvalue() == ""


def test_estimate_reports_its_work_within_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from entropy_elbo import montecarlo
    from entropy_elbo.data import iter_batches, make_synthetic
    from entropy_elbo.elbo import estimate
    from entropy_elbo.models import ModelConfig, build_model

    monkeypatch.setattr(montecarlo, "ELEMENTS_PER_BLOCK", 2_000)  # a block of 2 samples for 100 rows x D=10
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    ticks: list[int] = []
    estimate(model, iter_batches(make_synthetic("ppca", n=300, seed=0), 100), samples=9, seed=0, on_work=ticks.append)
    assert sum(ticks) == 300 * 9  # rows x samples, all of them
    assert ticks[:5] == [200, 200, 200, 200, 100]  # within the first batch: blocks of 2 samples x 100 rows


def test_compare_reports_each_subset_it_finishes() -> None:
    import torch

    from entropy_elbo.compare import compare
    from entropy_elbo.data import make_synthetic
    from entropy_elbo.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae1", data_dim=10, latent_dim=2))
    ticks: list[int] = []
    compare(model, make_synthetic("ppca", n=200, seed=0), sizes=[10, 50], repeats=3, mc_samples=(1,),
            on_work=ticks.append)
    assert ticks == [10, 10, 10, 50, 50, 50]
