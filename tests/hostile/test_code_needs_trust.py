"""No file runs code unless --trust-code: the family is every loader that can run code (TorchScript, pickles of
modules, pythae's encoder.pkl), and the mechanism is one door (`formats.trusted_load`) that every such call must
pass through. The source scan checks the door is the only way in; the files check it is shut without the flag."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch
from hostile_helpers import Marker, assert_user_error, invoke
from torch import nn

PACKAGE = Path(__file__).resolve().parents[2] / "entropy_elbo"
# calls that can run code from a file; torch.load and np.load only when not pinned to the safe reader
CODE_RUNNERS = {"torch.jit.load", "jit.load", "pickle.load", "pickle.loads", "marshal.loads", "eval", "exec",
                "yaml.load", "cloudpickle.load", "cloudpickle.loads", "dill.load", "dill.loads"}
PINNED = {"torch.load": ("weights_only", True), "np.load": ("allow_pickle", False),
          "numpy.load": ("allow_pickle", False)}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def risky_calls(tree: ast.AST) -> list[tuple[ast.Call, bool]]:
    """(call, inside a lambda handed to trusted_load) for every call that could run code from a file."""
    doors: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and dotted(node.func).endswith("trusted_load"):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Lambda):
                    doors.update(id(n) for n in ast.walk(arg))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        pinned = PINNED.get(name)
        safe_pin = pinned is not None and any(
            k.arg == pinned[0] and isinstance(k.value, ast.Constant) and k.value.value is pinned[1]
            for k in node.keywords)
        if name in CODE_RUNNERS or (pinned is not None and not safe_pin):
            found.append((node, id(node) in doors))
    return found


def test_every_loader_that_runs_code_goes_through_the_one_trusted_door() -> None:
    outside, inside = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        for call, behind_door in risky_calls(ast.parse(path.read_text())):
            if behind_door:
                inside += 1
            else:
                outside.append(f"{path.relative_to(PACKAGE)}:{call.lineno} {dotted(call.func)}")
    assert outside == [], f"code-running loaders outside trusted_load: {outside}"
    assert inside >= 3  # TorchScript, a pickled module, pythae's pickled networks


def test_the_scan_sees_what_it_must() -> None:
    """The scan itself flags an unpinned torch.load, a pickle.load and a jit.load that bypass the door."""
    bad = ast.parse("torch.load(p)\npickle.load(f)\ntorch.jit.load(p)\nnp.load(p, allow_pickle=True)\n"
                    "torch.load(p, weights_only=True)\ntrusted_load(p, w, t, lambda: torch.jit.load(p))\n")
    assert [(dotted(c.func), ok) for c, ok in risky_calls(bad)] == [
        ("torch.load", False), ("pickle.load", False), ("torch.jit.load", False), ("np.load", False),
        ("torch.jit.load", True)]


class Loud(nn.Module):
    """A TorchScript module whose __setstate__ (run by torch.jit.load) raises: proof that loading ran its code."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.w = state[0]
        self.training = state[1]
        raise RuntimeError("code in the archive ran\nsecond line\nthird line")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class RaisingEncoder(nn.Module):
    """A valid TorchScript VAE whose encode() raises a multi-line error on any batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_mu = nn.Linear(4, 2)
        self.log_sigma2 = nn.Parameter(torch.tensor(0.0))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] > 0:
            raise RuntimeError("encoder exploded\nwith a long story\nover many lines")
        return self.fc_mu(x), self.fc_mu(x)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]


@pytest.fixture(scope="module")
def coded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files whose loading runs code, under names and in places that hide what they are."""
    d = tmp_path_factory.mktemp("coded")
    torch.jit.script(Loud()).save(str(d / "loud.pt"))
    (d / "loud.ckpt").write_bytes((d / "loud.pt").read_bytes())  # a TorchScript archive named like Lightning
    torch.jit.script(RaisingEncoder()).save(str(d / "raises.pt"))
    torch.save(Marker(str(d / "RAN_module")), d / "module.pt")  # a pickle that opens a file when loaded
    for name, hidden in (("py_script", "script"), ("py_pickle", "pickle")):
        folder = d / name
        folder.mkdir()
        (folder / "model_config.json").write_text(json.dumps({"name": "VAEConfig", "input_dim": [4],
                                                              "latent_dim": 2}))
        if hidden == "script":  # pythae's model.pt swapped for TorchScript
            (folder / "model.pt").write_bytes((d / "loud.pt").read_bytes())
        else:  # a plain model.pt beside a pickled network that opens a file
            torch.save({"model_state_dict": {"encoder.w": torch.zeros(2)}}, folder / "model.pt")
            (folder / "encoder.pkl").write_bytes(pickle.dumps(Marker(str(d / "RAN_pythae")), protocol=2))
    return d


CODED = ["loud.pt", "loud.ckpt", "raises.pt", "module.pt", "py_script", "py_pickle"]


@pytest.mark.parametrize("name", CODED)
@pytest.mark.parametrize("command", ["inspect", "estimate"])
def test_untrusted_code_is_refused_unrun_in_one_line(coded: Path, kit: Path, name: str, command: str) -> None:
    args = [command, coded / name] + (["--data", kit / "x.npy"] if command == "estimate" else [])
    line = assert_user_error(invoke(args), 1, name, "needs --trust-code", "runs code")
    assert "ran" not in line.split("runs code")[0]
    assert not list(coded.glob("RAN_*")), "a pickle ran without --trust-code"


def test_inspect_names_a_torchscript_archive_without_loading_it(coded: Path) -> None:
    for name in ("loud.pt", "loud.ckpt", "py_script"):
        assert_user_error(invoke(["inspect", coded / name]), 1, "TorchScript archive; needs --trust-code")


@pytest.mark.parametrize("flag", ["--trust-code", "--trust-pickle"])
def test_the_flag_opens_the_door_and_what_the_code_raises_is_one_line(coded: Path, flag: str) -> None:
    """With the flag torch.jit.load runs: the archive's own error comes back as one line (proof it ran)."""
    assert_user_error(invoke(["inspect", coded / "loud.pt", flag]), 1, "loud.pt", "TorchScript archive failed",
                      "code in the archive ran")


def test_trusted_model_whose_encode_raises_is_one_line(coded: Path, kit: Path) -> None:
    for command in ("estimate", "collapse"):
        assert_user_error(invoke([command, coded / "raises.pt", "--data", kit / "x.npy", "--trust-code"]), 1,
                          "raises.pt", r"encode\(\) failed", "encoder exploded")
