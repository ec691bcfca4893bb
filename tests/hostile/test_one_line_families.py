"""One line, never a traceback: each family of inputs that used to end in a traceback or an internal error, tested
through the mechanism that now catches it (npy header dims, odd tensors, JSON depth, seed ranges, log rows,
stdout writes, stored variances <= 0, the model's own code raising, the progress of a resumed run)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from hostile_helpers import assert_user_error, invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_elbo.cli import main
from entropy_elbo.data import open_array
from entropy_elbo.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def npy_bytes(shape: tuple[int, ...], body: int = 64) -> bytes:
    """A version-1.0 .npy whose header declares `shape` (any ints) over `body` bytes of float32 zeros."""
    dims = "".join(f"{n}, " for n in shape)
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + b"\0" * body


DIM = st.one_of(st.integers(-(2**63), -1), st.integers(2**31, 2**64), st.integers(0, 20))


@settings(max_examples=60, deadline=None)
@given(st.lists(DIM, min_size=2, max_size=4).filter(lambda s: len(s) in (2, 4)))
def test_npy_header_dims_that_no_file_could_hold_are_one_line(tmp_path_factory: pytest.TempPathFactory,
                                                              shape: list[int]) -> None:
    """Negative dims, products past int64 or past the file: a DataError naming the file, or a correct array."""
    path = tmp_path_factory.mktemp("npy") / "x.npy"
    path.write_bytes(npy_bytes(tuple(shape)))
    try:
        x = open_array(path)
    except DataError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        if min(shape) < 0:
            assert "negative dimension" in str(err)
        return
    assert min(shape) > 0 and int(np.prod(shape)) * 4 <= 64 and x.shape == tuple(shape)


def test_npy_header_overflow_through_the_cli(kit: Path, tmp_path: Path) -> None:
    (tmp_path / "neg.npy").write_bytes(npy_bytes((-5, 4)))
    (tmp_path / "huge.npy").write_bytes(npy_bytes((3037000500, 3037000500)))
    assert_user_error(invoke(["estimate", kit / "vae1.safetensors", "--data", tmp_path / "neg.npy"]), 1,
                      "neg.npy", "negative dimension")
    assert_user_error(invoke(["estimate", kit / "vae1.safetensors", "--data", tmp_path / "huge.npy"]), 1,
                      "huge.npy", "truncated", f"needs {128 + 4 * 3037000500**2}\\)")


def state_dict(kit: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return dict(load_file(kit / "vae1.safetensors"))


ODD = {  # a weight made unusable by its layout, device or dtype, as torch.save keeps it
    "sparse_coo": (lambda t: t.to_sparse(), "layout sparse_coo"),
    "sparse_csr": (lambda t: t.to_sparse_csr(), "layout sparse_csr"),
    "meta": (lambda t: torch.empty_like(t, device="meta"), "meta device"),
    "complex": (lambda t: t.to(torch.complex64), "complex"),
    "float8": (lambda t: t.to(torch.float8_e4m3fn), "8-bit float format"),  # torch.isfinite has no kernel for it
}


def test_a_native_checkpoint_stored_in_float8_reads_as_its_values(kit: Path, tmp_path: Path) -> None:
    """Our own format loads into the model's float32 first, so an 8-bit file is read at the values it holds."""
    from safetensors.torch import save_file

    from entropy_elbo.checkpoints import load_model
    from entropy_elbo.checkpoints.native import read_metadata
    state = {k: v.to(torch.float8_e4m3fn) for k, v in state_dict(kit).items()}
    save_file(state, tmp_path / "f8.safetensors", metadata=read_metadata(kit / "vae1.safetensors"))
    loaded = load_model(tmp_path / "f8.safetensors").model.state_dict()
    assert all(torch.equal(loaded[k], v.float()) for k, v in state.items())


@pytest.mark.parametrize("kind", sorted(ODD))
def test_weights_that_are_not_dense_real_tensors_are_named(kit: Path, tmp_path: Path, kind: str) -> None:
    state = state_dict(kit)
    name = next(k for k in state if k.endswith("weight") and state[k].dim() == 2)
    state[name] = ODD[kind][0](state[name])
    torch.save(state, tmp_path / "odd.pt")
    for command in ("estimate", "inspect"):
        args = [command, tmp_path / "odd.pt"] + (["--data", kit / "x.npy"] if command == "estimate" else [])
        assert_user_error(invoke(args), 1, "odd.pt", f"'{name}'", ODD[kind][1])


DEEP = "[" * 50_000 + "]" * 50_000  # far past Python's recursion limit (1,000)


def test_deep_json_in_every_json_input_is_one_line(kit: Path, tmp_path: Path) -> None:
    """--model-kwargs, pythae's model_config.json, a run's run.json, Lightning's hyper_parameters and a
    checkpoint's config: nesting never reaches Python's recursion limit as a traceback."""
    assert_user_error(invoke(["inspect", kit / "vae1.safetensors", "--model", "torch.nn:Linear", "--model-kwargs",
                              '{"a": ' + DEEP + "}"]), 1, "--model-kwargs", "nested too deeply")
    folder = tmp_path / "pythae"
    folder.mkdir()
    (folder / "model_config.json").write_text('{"name": ' + DEEP + "}")
    assert_user_error(invoke(["inspect", folder]), 1, "model_config.json", "nested too deeply")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"settings": ' + DEEP + "}")
    (run / "log.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
    assert_user_error(invoke(["train", "linear", "--resume", run]), 1, "run.json", "nested too deeply")
    assert_user_error(invoke(["plot", run, "--out", tmp_path / "p.png"]), 1, "run.json", "nested too deeply")
    from entropy_elbo.checkpoints.torchfiles import lightning_implied_variance
    nested: dict[str, object] = {"kld_weight": 0.1}  # a Lightning hyper_parameters nested past the recursion limit
    for _ in range(50_000):
        nested = {"params": nested}
    assert lightning_implied_variance(nested, 4)[0] == pytest.approx(4 * 0.1 / 2)  # sigma^2 = D kld_weight / 2
    from entropy_elbo.models import ModelConfig
    with pytest.raises(Exception, match="model config: JSON nested too deeply") as caught:
        ModelConfig.from_json('{"kind": ' + DEEP + "}")
    assert isinstance(caught.value, DataError.__mro__[1])  # an EntropyElboError, so the CLI prints one line


def test_every_json_parse_is_one_that_catches_deep_nesting() -> None:
    """The family's mechanism: JSON is parsed by errors.parse_json, or inside a try that catches RecursionError
    (the safetensors header sniffers, which answer 'not this format')."""
    import ast
    loose = []
    for path in sorted((ROOT / "entropy_elbo").rglob("*.py")):
        tree = ast.parse(path.read_text())
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any("RecursionError" in ast.dump(h.type) for h in node.handlers if h.type):
                guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
            if isinstance(node, ast.FunctionDef) and node.name == "parse_json":
                guarded.update(id(n) for n in ast.walk(node))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "loads", "load") and getattr(node.func.value, "id", "") == "json" and id(node) not in guarded:
                loose.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert loose == [], f"json parsed where a deep nesting would be a RecursionError: {loose}"


def commands_with_seed() -> list[tuple[str, click.Parameter]]:
    return [(name, p) for name, cmd in main.commands.items() for p in cmd.params if p.name == "seed"]


def test_every_seed_option_takes_what_numpy_and_torch_take() -> None:
    found = commands_with_seed()
    assert {name for name, _ in found} >= {"estimate", "compare", "select", "train", "data"}
    for name, param in found:
        assert isinstance(param.type, click.IntRange), name
        assert (param.type.min, param.type.max) == (0, 2**63 - 1), name
        torch.Generator().manual_seed(param.type.max)  # the largest accepted seed is one torch accepts
        np.random.default_rng(param.type.max)


@pytest.mark.parametrize("command", ["compare", "select", "estimate"])
def test_negative_seed_is_a_usage_error(kit: Path, command: str) -> None:
    args = ([command, kit / "vae1.safetensors"] if command != "select" else [command]) + ["--data", kit / "x.npy"]
    result = invoke([*args, "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.stderr and "Traceback" not in result.stderr


GOOD_ROW = {"epoch": 1, "mc_elbo": -3.0, "entropy_elbo": -3.1, "heldout_elbo": None, "relative_gap": 0.03,
            "latent_entropies": [0.5, 1.2], "active_latents": 1}
BAD_ROWS = [  # (change to the second row, what the line must name)
    ({"mc_elbo": None}, "'mc_elbo' is None"), ({"epoch": "one"}, "'epoch' is 'one'"), ({"mc_elbo": True}, "'mc_elbo'"),
    ({"relative_gap": "x"}, "'relative_gap'"), ({"latent_entropies": [0.5]}, "'latent_entropies'"),
    ({"latent_entropies": "ab"}, "'latent_entropies'"), ({"latent_entropies": [0.5, None]}, "'latent_entropies'"),
]


@pytest.mark.parametrize(("change", "named"), [*BAD_ROWS, ("drop:mc_elbo", "'mc_elbo' is missing"),
                                                 ("drop:latent_entropies", "'latent_entropies' is missing")])
def test_plot_names_the_line_and_field_of_a_bad_log_row(tmp_path: Path, change: object, named: str) -> None:
    row = {**GOOD_ROW, "epoch": 2}
    if isinstance(change, str):
        row.pop(change.split(":")[1])
    else:
        row.update(change)
    (tmp_path / "log.jsonl").write_text(json.dumps(GOOD_ROW) + "\n" + json.dumps(row) + "\n")
    assert_user_error(invoke(["plot", tmp_path / "log.jsonl", "--out", tmp_path / "p.png"]), 1,
                      "log.jsonl: line 2", named)


def test_plot_draws_a_log_of_good_rows(tmp_path: Path) -> None:
    rows = [GOOD_ROW, {**GOOD_ROW, "epoch": 2, "entropy_elbo": None, "relative_gap": None}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke(["plot", tmp_path / "log.jsonl", "--out", tmp_path / "p.png"])
    assert result.exit_code == 0 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG", result.stderr


STDOUT_COMMANDS = [["estimate", "{k}/vae1.safetensors", "--data", "{k}/x.npy", "--samples", "2"],
                   ["inspect", "{k}/vae1.safetensors"], ["collapse", "{k}/vae1.safetensors", "--data", "{k}/x.npy"],
                   ["compare", "{k}/vae1.safetensors", "--data", "{k}/x.npy", "--sizes", "10", "--repeats", "2"]]


@pytest.mark.parametrize("args", STDOUT_COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize("as_json", [False, True])
def test_results_on_a_full_device_are_one_line(kit: Path, args: list[str], as_json: bool) -> None:
    """Every command's results go through report.stdout: a failed write is one line, whatever the command."""
    argv = [a.format(k=kit) for a in args] + (["--json"] if as_json else [])
    err = io.StringIO()
    with open("/dev/full", "w") as full, contextlib.redirect_stdout(full), contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as stop:
        main(argv, standalone_mode=False)
    assert stop.value.code == 1
    lines = err.getvalue().strip().splitlines()
    assert lines[-1].startswith("Error: cannot write the results to standard output (No space left on device)")
    assert "Traceback" not in err.getvalue()


def test_a_full_stdout_leaves_no_traceback_at_exit(kit: Path) -> None:
    """The real process: nothing of Python's final flush of stdout reaches stderr."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "entropy_elbo", "inspect", str(kit / "vae1.safetensors")],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("Error: cannot write the results to standard output")


VAR_MODEL = '''
import torch
from torch import nn

class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_mu = nn.Linear(4, 2)
        self.enc_std = nn.Parameter(torch.tensor([0.5, {enc}]))
        self.decoder = nn.Linear(2, 4)
        self.dec_var = nn.Parameter(torch.tensor({dec}))

    def encode(self, x):
        return self.fc_mu(x), torch.zeros(x.shape[0], 2)

    def decode(self, z):
        return self.decoder(z)
'''


@pytest.mark.parametrize(("enc", "dec", "flags", "named"), [
    (0.5, -0.25, ["--decoder-var", "dec_var", "--decoder-var-param", "var"], r"'dec_var' read as variance \(var\) "
                                                                            "holds -0.25"),
    (0.5, 0.0, ["--decoder-var", "dec_var", "--decoder-var-param", "std"], "'dec_var' read as std .* holds 0"),
    (-1.0, 0.3, ["--decoder-var", "dec_var", "--decoder-var-param", "var", "--encoder-var", "enc_std",
                 "--encoder-var-param", "std"], "'enc_std' read as std .* holds -1 at index 1"),
])
def test_a_stored_variance_that_is_not_positive_names_its_parameter(kit: Path, tmp_path: Path, enc: float,
                                                                    dec: float, flags: list[str], named: str) -> None:
    (tmp_path / "var_model.py").write_text(VAR_MODEL.format(enc=enc, dec=dec))
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib
        module = importlib.import_module("var_model")
        torch.save(module.VAE().state_dict(), tmp_path / "m.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("var_model", None)
    line = assert_user_error(invoke(["inspect", tmp_path / "m.pt", "--model", f"{tmp_path / 'var_model.py'}:VAE",
                                     *flags]), 1, "m.pt", named, "must be positive")
    assert "infinite" not in line


RAISING_MODEL = '''
import torch
from torch import nn

class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_mu = nn.Linear(4, 2)
        self.fc_var = nn.Linear(4, 2)
        self.decoder = nn.Linear(2, 4)
        self.log_sigma2 = nn.Parameter(torch.tensor(0.0))

    def encode(self, x):
        return self.fc_mu(x), self.fc_var(x)

    def decode(self, z):
        if z.shape[0] > 2:  # the probe batch passes: the failure comes in the middle of the estimate
            raise ValueError("decoder gave up\\non line two\\nand three")
        return self.decoder(z)
'''


def test_the_models_own_code_raising_mid_estimate_is_one_line(kit: Path, tmp_path: Path) -> None:
    (tmp_path / "raising.py").write_text(RAISING_MODEL)
    spec = f"{tmp_path / 'raising.py'}:VAE"
    import importlib.util
    loader = importlib.util.spec_from_file_location("raising_model", tmp_path / "raising.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    torch.save(module.VAE().state_dict(), tmp_path / "r.pt")
    line = assert_user_error(invoke(["estimate", tmp_path / "r.pt", "--data", kit / "x.npy", "--model", spec]), 1,
                             r"decode\(\) failed", r"\(ValueError: decoder gave up\)")
    assert "line two" not in line


def test_a_resumed_run_starts_its_progress_at_the_epochs_done(kit: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    base = ["train", "linear", "--data", kit / "x.npy", "--batch-size", "25", "--samples", "1"]
    assert invoke([*base, "--out", run, "--epochs", "3", "--quiet"]).exit_code == 0
    result = invoke(["train", "linear", "--resume", run, "--epochs", "6"])  # not a terminal: plain progress lines
    assert result.exit_code == 0, result.stderr
    counts = re.findall(r"^epoch (\d+)/6 ", result.stderr, flags=re.M)
    assert counts[0] == "4" and counts[-1] == "6", result.stderr  # epochs 1-3 were done before the resume
    assert all(int(c) > 3 for c in counts)


def test_a_message_spanning_lines_still_prints_as_one() -> None:
    """The CLI's last line of defence: any of our errors, or a bug's, is printed on one line."""
    from click.testing import CliRunner

    from entropy_elbo.cli import Group
    from entropy_elbo.errors import EntropyElboError

    @click.group(cls=Group)
    def tool() -> None:
        pass

    @tool.command()
    def ours() -> None:
        raise EntropyElboError("file.pt: torch says\n  line two\n\nline three")

    @tool.command()
    def bug() -> None:
        raise RuntimeError("a\n  b")

    for name, want in (("ours", "Error: file.pt: torch says / line two / line three\n"),
                       ("bug", "Error: internal error RuntimeError: a / b; rerun with --debug and report it\n")):
        result = CliRunner().invoke(tool, [name])
        assert result.exit_code == 1 and result.stderr == want, result.stderr
