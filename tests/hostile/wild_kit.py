"""Valid checkpoints from the wild, built here: a state_dict .pt, a Lightning .ckpt, a plain safetensors file,
a TorchScript archive, a pythae folder, and the user's model class in a .py file (for --model FILE.py:VAE)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pythae.models as pm
import torch
from safetensors.torch import save_file

D, H = 4, 2

MODEL_PY = '''
import torch
from torch import nn


class VAE(nn.Module):
    """Gaussian VAE: one hidden layer, fc_mu / fc_var heads, a learned scalar decoder log-variance."""

    def __init__(self, d=4, h=2, hidden=8):
        super().__init__()
        self.encoder = nn.Linear(d, hidden)
        self.fc_mu = nn.Linear(hidden, h)
        self.fc_var = nn.Linear(hidden, h)
        self.decoder = nn.Linear(h, d)
        self.log_sigma2 = nn.Parameter(torch.tensor(-0.5))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.relu(self.encoder(x))
        return self.fc_mu(t), self.fc_var(t)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])
'''


def user_model_class(folder: Path) -> type:
    """Write model.py into `folder` and import its VAE class (the same class --model FILE.py:VAE builds)."""
    path = folder / "model.py"
    path.write_text(MODEL_PY)
    spec = importlib.util.spec_from_file_location(f"wild_kit_model_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.VAE


def build_wild(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write one valid file of every wild format into `folder`; returns them by name."""
    cls = user_model_class(folder)
    torch.manual_seed(seed)
    vae = cls(D, H).eval()
    state = vae.state_dict()
    files = {"model_py": folder / "model.py", "pt": folder / "sd.pt", "ckpt": folder / "lit.ckpt",
             "safetensors": folder / "plain.safetensors", "script": folder / "script.pt", "pythae": folder / "pythae"}
    torch.save(state, files["pt"])
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3, "global_step": 30,
                "pytorch-lightning_version": "2.1.0", "optimizer_states": [], "lr_schedulers": []}, files["ckpt"])
    save_file({k: v.contiguous() for k, v in state.items()}, files["safetensors"])
    torch.jit.script(vae).save(str(files["script"]))
    torch.manual_seed(seed)
    pm.VAE(pm.VAEConfig(input_dim=(D,), latent_dim=H)).save(str(files["pythae"]))  # pythae's own folder
    return files
