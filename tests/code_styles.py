"""VAE classes written in the styles of public VAE code (issue #22), on a probabilistic PCA at its optimum, so the
right reading of what their methods return is known in closed form."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Laplace, Normal

D, H, S2 = 6, 2, 0.5


def ppca(seed=0, n=2000):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, H, generator=g))
    w = q * torch.tensor([3.0, 2.0])
    x = torch.randn(n, H, generator=g) @ w.T + math.sqrt(S2) * torch.randn(n, D, generator=g)
    m = (w * w).sum(0) + S2  # diagonal W^T W + s2 I
    return w, m, x


class Base(nn.Module):
    style = "logvar"

    def __init__(self):
        super().__init__()
        w, m, _ = ppca()
        tau2 = S2 / m
        self.enc_mu = nn.Linear(D, H)
        self.enc_s = nn.Linear(D, H)
        self.dec = nn.Linear(H, D)
        self.logsigma2 = nn.Parameter(torch.tensor(math.log(S2)))
        with torch.no_grad():
            self.enc_mu.weight.copy_(w.T / m[:, None])
            self.enc_mu.bias.zero_()
            self.enc_s.weight.zero_()
            raw = {"logvar": tau2.log(), "std": 0.5 * tau2.log(), "logstd": 0.5 * tau2.log(),
                   "softplus": torch.log(torch.expm1(tau2.sqrt() - 1e-4))}[self.style]
            self.enc_s.bias.copy_(raw)
            self.dec.weight.copy_(w)
            self.dec.bias.zero_()

    def decode(self, z):
        return self.dec(z)


class StdScale(Base):  # Pyro / tutorials: return loc, torch.exp(h)
    style = "std"

    def encode(self, x):
        return self.enc_mu(x), torch.exp(self.enc_s(x))


class LogStd(Base):
    style = "logstd"

    def encode(self, x):
        return self.enc_mu(x), self.enc_s(x)


class NormalOut(Base):
    style = "softplus"

    def encode(self, x):
        return Normal(self.enc_mu(x), nn.functional.softplus(self.enc_s(x)) + 1e-4)


class IndependentOut(Base):
    style = "std"

    def encode(self, x):
        return Independent(Normal(self.enc_mu(x), self.enc_s(x).exp()), 1)


class SampleFirst(Base):
    def encode(self, x):
        mu, logvar = self.enc_mu(x), self.enc_s(x)
        return mu + (0.5 * logvar).exp() * torch.randn_like(mu), mu, logvar


class LaplaceDecoder(Base):
    def encode(self, x):
        return self.enc_mu(x), self.enc_s(x)

    def decode(self, z):
        return Laplace(self.dec(z), 1.0)


def own_q(model, x):
    """The model's own posterior as a torch.distributions Normal (independent of the tool)."""
    out = model.encode(x)
    if isinstance(out, Independent):
        out = out.base_dist
    if isinstance(out, Normal):
        return out
    if isinstance(model, StdScale):
        return Normal(out[0], out[1])
    if isinstance(model, LogStd):
        return Normal(out[0], out[1].exp())
    if isinstance(model, SampleFirst):
        return Normal(out[1], (0.5 * out[2]).exp())
    return Normal(out[0], (0.5 * out[1]).exp())


class Siblings(nn.Module):  # lightning-bolts VAE layout: encoder, fc_mu, fc_var, decoder; no encode()
    def __init__(self):
        super().__init__()
        b = Base()
        self.encoder = nn.Sequential(nn.Linear(D, D))
        with torch.no_grad():
            self.encoder[0].weight.copy_(torch.eye(D))
            self.encoder[0].bias.zero_()
        self.fc_mu, self.fc_var, self.decoder = b.enc_mu, b.enc_s, b.dec
        self.logsigma2 = b.logsigma2

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_var(h)
        return self.decoder(mu + (0.5 * logvar).exp() * torch.randn_like(mu)), mu, logvar


def logits_data(seed=1, n=2000):
    g = torch.Generator().manual_seed(seed)
    w, _, _ = ppca()
    z = torch.randn(n, H, generator=g)
    return (torch.sigmoid(z @ w.T) + 0.05 * torch.randn(n, D, generator=g)).clamp(0, 1), w


class Logits(nn.Module):  # decoder net returns logits; the loss applies the sigmoid
    def __init__(self):
        super().__init__()
        _, w = logits_data()
        self.dec = nn.Linear(H, D)
        self.w = w
        with torch.no_grad():
            self.dec.weight.copy_(w)
            self.dec.bias.zero_()
        self.enc_s = nn.Parameter(torch.full((H,), -3.0))

    def encode(self, x):
        logit = torch.logit(x.clamp(0.02, 0.98))
        mu = logit @ torch.linalg.pinv(self.w).T
        return mu, self.enc_s.expand_as(mu)

    def decode(self, z):
        return self.dec(z)


class StdLaplace(StdScale):  # a std-scale encoder before a Laplace decoder: no decoder score can check the encoder
    def decode(self, z):
        return Laplace(self.dec(z), 1.0)


class Unconverged(Base):  # a log-variance encoder whose tau^2 is 10x the optimum's: a_h far from 1, nothing misread
    def encode(self, x):
        return self.enc_mu(x), self.enc_s(x) + math.log(10.0)


class OddHeads(nn.Module):  # no encode(); heads beside the encoder under names no list holds; forward says which
    def __init__(self):
        super().__init__()
        b = Base()
        self.encoder = nn.Sequential(nn.Linear(D, 2 * D + 1), nn.Identity())  # features: width no decoder takes
        with torch.no_grad():
            self.encoder[0].weight.zero_()
            self.encoder[0].weight[:D].copy_(torch.eye(D))
            self.encoder[0].bias.zero_()
        self.to_center = nn.Linear(2 * D + 1, H)
        self.to_spread = nn.Linear(2 * D + 1, H)
        with torch.no_grad():
            for new, old in ((self.to_center, b.enc_mu), (self.to_spread, b.enc_s)):
                new.weight.zero_()
                new.weight[:, :D].copy_(old.weight)
                new.bias.copy_(old.bias)
        self.decoder = b.dec
        self.logsigma2 = b.logsigma2

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.to_center(h), self.to_spread(h)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        return self.decoder(z), z, mu, logvar


class DictOut(Base):  # no encode(), no encoder: forward returns a dict whose keys say what each entry is
    style = "logstd"

    def forward(self, x):
        mu, log_std = self.enc_mu(x), self.enc_s(x)
        z = mu + log_std.exp() * torch.randn_like(mu)
        return {"recon": self.dec(z), "z": z, "mu": mu, "log_std": log_std}


class DictTwoMeans(DictOut):
    def forward(self, x):
        out = super().forward(x)
        return {**out, "loc": out["mu"] * 1.0}


def forward_q(model, x):
    """The model's own posterior from its forward(), as a torch.distributions Normal."""
    with torch.no_grad():
        out = model(x)
    if isinstance(out, dict):
        return Normal(out["mu"], out["log_std"].exp())
    return Normal(out[2], (0.5 * out[3]).exp())
