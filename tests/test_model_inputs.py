"""What a model's own code takes (issue #22): flat rows for a Conv2d model are reshaped when the layer and D fix the
image shape (else one line naming the shape to pass), and a conditional VAE is refused as conditional, by name."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_checkpoints_wild import one_line_error, run
from torch import nn
from torch.distributions import Normal

import entropy_elbo
from entropy_elbo.errors import EntropyElboError

N, SIDE = 200, 6


class ConvVAE(nn.Module):
    """A conv encoder that needs (B, 1, 6, 6) images; decode() returns images too."""

    def __init__(self, channels: int = 1, side: int = SIDE) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shape = (channels, side, side)
        self.encoder = nn.Sequential(nn.Conv2d(channels, 4, 3, 2, 1), nn.Tanh(), nn.Flatten())
        width = 4 * ((side + 1) // 2) ** 2
        self.fc_mu, self.fc_var = nn.Linear(width, 2), nn.Linear(width, 2)
        self.dec = nn.Linear(2, channels * side * side)
        self.log_sigma2 = nn.Parameter(torch.tensor(math.log(0.5)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)  # fails on flat rows: conv2d wants (B, C, H, W)
        return self.fc_mu(h), self.fc_var(h) - 2.0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).reshape(-1, *self.shape)


class Recorded(ConvVAE):
    """A non-square image (1, 4, 9) that no square rule could find: the model records it."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (1, 4, 9)
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.Tanh(), nn.Flatten())
        self.fc_mu, self.fc_var = nn.Linear(4 * 2 * 5, 2), nn.Linear(4 * 2 * 5, 2)
        self.dec, self.shape = nn.Linear(2, 36), (1, 4, 9)


class CVAE(nn.Module):
    """The tutorial conditional VAE: encode(x, c), decode(z, c) with a one-hot label c."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6 + 3, 8), nn.ReLU())
        self.fc_mu, self.fc_var = nn.Linear(8, 2), nn.Linear(8, 2)
        self.decoder = nn.Sequential(nn.Linear(2 + 3, 6))

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(torch.cat([x, c], 1))
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, c], 1))


class FixedLabel(CVAE):
    """A conditional VAE whose encode(x) concatenates a label it holds: one argument, a D + 3 wide first layer."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return super().encode(x, torch.zeros(len(x), 3))

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().decode(z, torch.zeros(len(z), 3))


def images(channels: int = 1, side: int = SIDE) -> torch.Tensor:
    return torch.randn(N, channels, side, side, generator=torch.Generator().manual_seed(1))


def own_entropy(model: ConvVAE, x: torch.Tensor) -> float:
    """mean_n sum_h H[q(z_h|x_n)] from torch.distributions on the model's own encode() of the images."""
    with torch.no_grad():
        mu, log_var = model.encode(x)
    return float(Normal(mu, (0.5 * log_var).exp()).entropy().double().sum(-1).mean())


def test_flat_rows_for_a_conv_model_are_reshaped_and_give_the_numbers_of_the_images() -> None:
    model, x = ConvVAE(), images()
    flat = x.reshape(N, -1)
    opened = entropy_elbo.open_checkpoint(model, flat.numpy())
    note = " ".join(opened.introspection.notes)
    assert "rows reshaped to images 1x6x6" in note and "C*H*W = D with H = W" in note
    a = entropy_elbo.estimate(model, flat.numpy(), samples=16, device="cpu")
    b = entropy_elbo.estimate(model, x.numpy(), samples=16, device="cpu")
    assert a.d == b.d == 36
    assert a.entropies["encoder"] == pytest.approx(own_entropy(model, x), rel=1e-6)
    assert a.entropy_elbo == pytest.approx(b.entropy_elbo, rel=1e-6)
    assert a.mc_elbo == pytest.approx(b.mc_elbo, rel=1e-6)  # the same rows, the same per-row sample streams


def test_a_shape_the_model_records_is_used_where_no_square_fits() -> None:
    model = Recorded()
    x = torch.randn(N, 1, 4, 9, generator=torch.Generator().manual_seed(2))
    opened = entropy_elbo.open_checkpoint(model, x.reshape(N, -1).numpy())
    assert "reshaped to images 1x4x9 (the model's own input_shape)" in " ".join(opened.introspection.notes)
    est = entropy_elbo.estimate(model, x.reshape(N, -1).numpy(), samples=0, device="cpu")
    assert est.entropies["encoder"] == pytest.approx(own_entropy(model, x), rel=1e-6)


def test_flat_rows_whose_image_shape_cannot_be_told_are_one_line_naming_the_shape_to_pass() -> None:
    model = ConvVAE(channels=3, side=4)
    flat = torch.randn(N, 50).numpy()  # 50 = 3 x H x W has no solution
    with pytest.raises(EntropyElboError) as err:
        entropy_elbo.estimate(model, flat, samples=0, device="cpu")
    line = str(err.value)
    assert "\n" not in line and "conv2d" not in line and "failed" not in line
    assert "rows are flat, shape (N, 50)" in line and "encoder.0 is a Conv2d" in line and "(N, 3, H, W)" in line


def test_a_conditional_vae_is_refused_as_conditional_by_its_signature() -> None:
    x = torch.randn(N, 6).numpy()
    for call in (entropy_elbo.estimate, entropy_elbo.collapse):
        with pytest.raises(EntropyElboError, match=r"^conditional VAE: CVAE.encode\(x, c\) needs a condition \(c\)"):
            call(CVAE(), x, device="cpu")
    with pytest.raises(EntropyElboError, match="conditional VAEs .* are not covered.*wrap the model"):
        entropy_elbo.estimate(CVAE(), x, device="cpu")


def test_a_conditional_vae_is_refused_as_conditional_by_its_first_layer() -> None:
    with pytest.raises(EntropyElboError, match="conditional VAE: the model's first layer encoder.0 takes 9 inputs per "
                                               "row but the data rows have 6: 3 more"):
        entropy_elbo.estimate(FixedLabel(), torch.randn(N, 6).numpy(), device="cpu")


def test_a_conditional_state_dict_is_refused_as_conditional_by_its_widths(tmp_path: Path) -> None:
    torch.save(CVAE().state_dict(), tmp_path / "cvae.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((N, 6)).astype(np.float32))
    line = one_line_error(run("inspect", tmp_path / "cvae.pt", "--data", tmp_path / "x.npy"))
    assert "conditional VAE: the encoder's first layer takes 9 = 6 + 3 inputs and the decoder's first layer 5 = " \
           "2 + 3" in line and "not covered" in line


def test_images_of_the_wrong_channel_count_are_one_line_before_the_models_own_error() -> None:
    with pytest.raises(EntropyElboError, match=r"^data: images of 3 channel\(s\), but the model's first layer "
                                               r"encoder.0 is a Conv2d taking 1; pass images of 1 channel\(s\)$"):
        entropy_elbo.estimate(ConvVAE(), images(channels=3).numpy(), samples=0, device="cpu")
    with pytest.raises(EntropyElboError, match=r"taking 3; pass images of 3 channel\(s\) \(if it is a conditional "
                                               "VAE that stacks a 2-channel condition"):
        entropy_elbo.estimate(ConvVAE(channels=3), images(channels=1).numpy(), samples=0, device="cpu")


class ExtraArgument(ConvVAE):
    def decode(self, z: torch.Tensor, shape: tuple) -> torch.Tensor:  # type: ignore[override]
        return self.dec(z).reshape(-1, *shape)


def test_a_second_input_not_named_like_a_condition_is_said_as_what_it_is() -> None:
    with pytest.raises(EntropyElboError, match=r"^ExtraArgument.decode\(z, shape\) needs 1 more input\(s\) \(shape\)"
                                               r".*if they are a condition or label, it is a conditional VAE"):
        entropy_elbo.estimate(ExtraArgument(), images().numpy(), samples=0, device="cpu")
