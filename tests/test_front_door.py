"""The front door against the command line (issue #21, point 1): every refusal and every reading that the CLI's
tests cover runs through `entropy_elbo.estimate` / `collapse` / `inspect` (and `measure.compare`) too, on the same
files with the same options, and gives the same error (the class the CLI caught, its one-line message) or the same
numbers (the CLI's --json against the returned object's `to_dict()`, to 1e-12 relative at the same seed).

A case is a command line as the CLI tests write it; `front_door` turns it into the Python call a user would write
(a number for --decoder-variance, a dict for --model-kwargs). Folders in a command line: {k} the hostile kit (a VAE-1,
a linear VAE, x.npy 50 x 4), {c} its hostile files, {w} valid checkpoints from the wild, {b} hostile wild files,
{r} a run folder that `train --out` wrote, {t} the checkpoints built below (authors', PyTorch-VAE, pythae, ...).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

HOSTILE = Path(__file__).parent / "hostile"
sys.path.insert(0, str(HOSTILE))  # the hostile suite's kits and cases (tests/hostile is no package)

import test_cli_bad_inputs as bad_inputs  # noqa: E402
import test_cli_wild_bad_inputs as wild_bad_inputs  # noqa: E402
from test_checkpoints_wild import N_ROWS, PlainMLP, PyTorchVAELayout  # noqa: E402
from test_peers_pythae import saved  # noqa: E402
from test_real_checkpoints import (  # noqa: E402
    AUTHORS,
    EXAMPLES_VAE,
    MSEVAE,
    authors_main_setup,
    ppca_rows,
    train_bound,
)
from wild_kit import D, user_model_class  # noqa: E402

import entropy_elbo  # noqa: E402
from entropy_elbo import measure  # noqa: E402
from entropy_elbo.checkpoints import LoadOptions  # noqa: E402
from entropy_elbo.cli import main, one_line  # noqa: E402
from entropy_elbo.cli.base import CHECKPOINT_FLAGS  # noqa: E402
from entropy_elbo.compare import parse_sizes  # noqa: E402
from entropy_elbo.errors import EntropyElboError  # noqa: E402
from entropy_elbo.monitor import Monitor  # noqa: E402


def _hostile_kit() -> Callable:
    """The `kit` fixture of tests/hostile/conftest.py (a conftest is not importable by name from here)."""
    spec = importlib.util.spec_from_file_location("hostile_conftest", HOSTILE / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kit


kit = _hostile_kit()  # the hostile suite's fixtures, shared here: their files are the CLI tests' own
bad, wild, wbad, run_dir = bad_inputs.bad, wild_bad_inputs.wild, wild_bad_inputs.wbad, wild_bad_inputs.run_dir

# ---------------------------------------------------------------------------------------------- the two doors

PYTHON = {"estimate": entropy_elbo.estimate, "collapse": entropy_elbo.collapse, "inspect": entropy_elbo.inspect,
          "compare": measure.compare}
CLI_ONLY = ("as_json", "top", "plot")  # how the CLI prints, not what it measures


def natural(flag: str, text: object) -> object:
    """A flag's text as a Python caller passes it: a number for --decoder-variance, a dict for --model-kwargs."""
    if flag == "decoder_variance" and text != "optimal":
        try:
            return float(text)
        except ValueError:
            return text
    if flag == "model_kwargs":
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, dict) else text
    return text


def front_door(argv: list[str], **hooks: object) -> Callable[[], object]:
    """The Python call that the command line `argv` stands for: the same source, data and options."""
    name, *rest = argv
    with main.commands[name].make_context(name, rest) as ctx:
        params, meta = dict(ctx.params), dict(ctx.meta)
    given = {k: params.pop(k) for k in CHECKPOINT_FLAGS}
    flags = {k: natural(k, v) for k, v in given.items() if v is not None and (k != "trust_code" or v)}
    source, data = str(params.pop("checkpoint")), params.pop("data")
    for key in CLI_ONLY:
        params.pop(key, None)
    if name == "compare":
        params["sizes"] = None if params["sizes"] is None else parse_sizes(params["sizes"])
        params["mc_samples"] = parse_sizes(params["mc_samples"], "--mc-samples")
    if name != "inspect":
        params.update(threads=meta.get("threads"), preprocess=meta.get("preprocess", "auto"), **hooks)
    return lambda: PYTHON[name](source, data, **params, **flags)


def invoke(argv: list[str]) -> object:
    return CliRunner().invoke(main, argv)


def cli_refusal(argv: list[str]) -> tuple[str, type]:
    """The CLI's one error line without 'Error: ', and the class of what it caught (rerun under --debug)."""
    said = invoke(argv)
    lines = said.stderr.strip().splitlines()
    assert said.exit_code == 1 and said.stdout == "", (said.exit_code, said.output)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "internal error" not in lines[0], said.stderr
    caught = invoke(["--debug", *argv]).exception
    assert isinstance(caught, EntropyElboError), repr(caught)
    return lines[0].removeprefix("Error: "), type(caught)


def cli_json(argv: list[str]) -> dict:
    said = invoke([*argv, "--json"])
    assert said.exit_code == 0, said.output
    return json.loads(said.stdout)


def as_printed(data: dict) -> dict:
    """A library object's dict as the CLI's --json prints it (report.print_json)."""
    return json.loads(json.dumps(data, allow_nan=False, default=float))


def assert_same(cli: object, py: object, where: str = "") -> None:
    """Equal structure and text; numbers equal to 1e-12 relative."""
    if isinstance(cli, dict):
        assert isinstance(py, dict) and sorted(cli) == sorted(py), (where, cli, py)
        for key in cli:
            assert_same(cli[key], py[key], f"{where}.{key}")
    elif isinstance(cli, list):
        assert isinstance(py, list) and len(cli) == len(py), (where, cli, py)
        for i, (a, b) in enumerate(zip(cli, py, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(cli, (int, float)) and not isinstance(cli, bool):
        assert isinstance(py, (int, float)) and math.isclose(cli, py, rel_tol=1e-12, abs_tol=0.0), (where, cli, py)
    else:
        assert cli == py, (where, cli, py)


def assert_same_refusal(argv: list[str]) -> None:
    line, caught = cli_refusal(argv)
    with pytest.raises(EntropyElboError) as raised:
        front_door(argv)()
    assert type(raised.value) is caught, (type(raised.value), caught)
    assert one_line(str(raised.value)) == line


def assert_same_reading(argv: list[str]) -> None:
    said, opened = cli_json(argv), []
    got = front_door(argv, on_open=opened.append)() if argv[0] != "inspect" else front_door(argv)()
    if argv[0] == "collapse":  # the CLI adds the file's name and how it was read
        assert said.pop("source") == argv[1]
        read = opened[0]
        found = read.introspection.to_dict() if read.wild else None
        assert_same(said.pop("checkpoint", None), found and as_printed(found))
        assert_same(said.pop("assumptions", None), found and as_printed(found)["assumptions"])
    assert_same(said, as_printed(got.to_dict()))


# ---------------------------------------------------------------------------------------------- the cases

READ = " --activation relu --output-activation linear --no-head-activation"  # untrained: the data cannot tell
MK = ' --model-kwargs {{"latent_dims":4,"data_dims":6,"n_hidden":16}}'
MINE = [  # (id, command line, refused)
    # our own checkpoints and a run folder
    ("ours-vae1", "estimate {k}/vae1.safetensors --data {k}/x.npy --samples 5", False),
    ("ours-vae1-iwae-seed", "estimate {k}/vae1.safetensors --data {k}/x.npy --samples 3 --iwae 4 --seed 7", False),
    ("ours-vae1-collapse", "collapse {k}/vae1.safetensors --data {k}/x.npy", False),
    ("ours-vae1-collapse-delta", "collapse {k}/vae1.safetensors --data {k}/x.npy --delta 0.04 --active-threshold 0.1",
     False),
    ("ours-vae1-inspect", "inspect {k}/vae1.safetensors", False),
    ("ours-linear-no-data", "estimate {k}/linear.safetensors --samples 0", False),
    ("ours-linear-no-data-samples", "estimate {k}/linear.safetensors", True),
    ("ours-vae1-no-data", "estimate {k}/vae1.safetensors --samples 0", True),
    ("ours-rows-not-d-collapse", "collapse {k}/vae1.safetensors --data {c}/cols3.npy", True),
    ("run-folder", "estimate {r} --data {k}/x.npy --samples 5", False),
    ("run-folder-collapse", "collapse {r} --data {k}/x.npy", False),
    # the wild formats
    ("wild-pt", "estimate {w}/sd.pt --data {k}/x.npy --samples 5" + READ, False),
    ("wild-pt-tied", "estimate {w}/sd.pt --data {k}/x.npy --samples 5", True),
    ("wild-pt-tied-collapse", "collapse {w}/sd.pt --data {k}/x.npy", True),
    ("wild-pt-collapse", "collapse {w}/sd.pt --data {k}/x.npy" + READ, False),
    ("wild-pt-inspect-data", "inspect {w}/sd.pt --data {k}/x.npy" + READ, False),
    ("wild-ckpt", "estimate {w}/lit.ckpt --data {k}/x.npy --samples 5" + READ, False),
    ("wild-safetensors", "estimate {w}/plain.safetensors --data {k}/x.npy --samples 5" + READ, False),
    ("wild-script", "estimate {w}/script.pt --data {k}/x.npy --samples 5 --trust-code", False),
    ("wild-model", "estimate {w}/sd.pt --data {k}/x.npy --samples 5 --model {w}/model.py:VAE", False),
    ("wild-model-collapse", "collapse {w}/sd.pt --data {k}/x.npy --model {w}/model.py:VAE", False),
    ("wild-rows-not-d-collapse", "collapse {w}/sd.pt --data {b}/cols3.npy" + READ, True),
    # a fixed variance: pythae (mse), PyTorch-VAE layouts; without a value, with one, and 'optimal'
    ("pythae-no-value", "estimate {w}/pythae --data {k}/x.npy --samples 5", True),
    ("pythae-value", "estimate {w}/pythae --data {k}/x.npy --samples 5 --decoder-variance 0.5", False),
    ("pythae-optimal", "estimate {w}/pythae --data {k}/x.npy --samples 5 --decoder-variance optimal", False),
    ("pythae-collapse", "collapse {w}/pythae --data {k}/x.npy", False),
    ("pythae-inspect", "inspect {w}/pythae", False),
    ("mse-no-value", "estimate {t}/mse.pt --data {t}/x5.npy --samples 5" + READ, True),
    ("mse-value", "estimate {t}/mse.pt --data {t}/x5.npy --samples 5 --decoder-variance 0.3" + READ, False),
    ("mse-optimal", "estimate {t}/mse.pt --data {t}/x5.npy --samples 5 --decoder-variance optimal" + READ, False),
    ("mse-collapse", "collapse {t}/mse.pt --data {t}/x5.npy" + READ, False),
    ("mse-inspect-optimal", "inspect {t}/mse.pt --decoder-variance optimal", False),
    ("pytorch-vae-no-value", "estimate {t}/last.ckpt --data {t}/flat.npy --samples 4", True),
    ("pytorch-vae-value", "estimate {t}/last.ckpt --data {t}/flat.npy --samples 4 --decoder-variance 0.3", False),
    ("pytorch-vae-optimal", "estimate {t}/last.ckpt --data {t}/flat.npy --samples 4 --decoder-variance optimal",
     False),
    ("pytorch-vae-collapse-images", "collapse {t}/last.ckpt --data {t}/images.npy", False),
    # Bernoulli decoders: a sigmoid output on [0, 1] data, a BCE loss named by Lightning or pythae
    ("bernoulli", "estimate {t}/bern.pth --data {t}/bern.npy --samples 4", True),
    ("bernoulli-value", "estimate {t}/bern.pth --data {t}/bern.npy --samples 4 --decoder-variance 1", True),
    ("bernoulli-optimal", "estimate {t}/bern.pth --data {t}/bern.npy --samples 4 --decoder-variance optimal", True),
    ("bernoulli-model", "estimate {t}/bern.pth --data {t}/bern.npy --samples 4 --decoder-variance 1"
                        " --model {t}/examples_vae.py:VAE", True),
    ("bernoulli-collapse", "collapse {t}/bern.pth --data {t}/bern.npy", False),
    ("bernoulli-stated-gaussian", "estimate {t}/bern.pth --data {t}/bern.npy --samples 4 --decoder-variance 1"
                                  " --output-activation sigmoid --activation relu", False),
    ("lightning-bce", "estimate {t}/bce.ckpt --data {t}/x4.npy --samples 4 --decoder-variance 1" + READ, True),
    ("lightning-bce-collapse", "collapse {t}/bce.ckpt --data {t}/x4.npy" + READ, False),
    ("pythae-bce", "estimate {t}/VAE --data {t}/x6.npy --samples 4 --decoder-variance 1", True),
    ("pythae-bce-collapse", "collapse {t}/VAE --data {t}/x6.npy", True),
    ("pythae-bce-inspect", "inspect {t}/VAE", True),
    # priors other than N(0, I), flow posteriors
    ("vamp-estimate", "estimate {t}/vamp.pt --data {t}/x4.npy --samples 4", True),
    ("vamp-collapse", "collapse {t}/vamp.pt --data {t}/x4.npy", True),
    ("vamp-inspect", "inspect {t}/vamp.pt", True),
    ("mixture-estimate", "estimate {t}/mixture.pt --data {t}/x4.npy --samples 4", True),
    ("pythae-vamp", "estimate {t}/VAMP --data {t}/x6.npy --samples 4", True),
    ("pythae-vamp-collapse", "collapse {t}/VAMP --data {t}/x6.npy", True),
    ("pythae-iaf", "estimate {t}/VAE_IAF --data {t}/x6.npy --samples 4", True),
    ("pythae-iaf-inspect", "inspect {t}/VAE_IAF", True),
    ("pythae-linnf", "estimate {t}/VAE_LinNF --data {t}/x6.npy --samples 4", True),
    ("pythae-linnf-collapse", "collapse {t}/VAE_LinNF --data {t}/x6.npy", True),
    # a plain MLP state_dict read from its shapes: readings scored on the data, or stated
    ("mlp-tied", "estimate {t}/mlp.pt --data {t}/x7.npy --samples 5", True),  # tanh and elu score alike
    ("mlp-tied-collapse", "collapse {t}/mlp.pt --data {t}/x7.npy", True),
    ("mlp-stated", "estimate {t}/mlp.pt --data {t}/x7.npy --samples 5 --activation tanh --output-activation linear"
                   " --no-head-activation", False),
    ("mlp-rows-not-d", "estimate {t}/mlp.pt --data {t}/x5.npy --samples 5", True),
    # the paper authors' files, read with no flags (main.py's readings scored on the data), and under --model
    *[(f"authors-{i}", f"estimate {{t}}/authors{i}/vae --data {{t}}/ppca.npy --samples 5", False)
      for i in range(len(AUTHORS))],
    *[(f"authors-{i}-collapse", f"collapse {{t}}/authors{i}/vae --data {{t}}/ppca.npy", False)
      for i in range(len(AUTHORS))],
    ("authors-main-model", "estimate {t}/main/vae --data {t}/main/x.npy --samples 5 --model {t}/main/model.py:build"
                           + MK, False),
    ("authors-main-model-collapse", "collapse {t}/main/vae --data {t}/main/x.npy --model {t}/main/model.py:build"
                                    + MK, False),
    # a table trained with a scaler: a file's rows are ambiguous until --preprocess says
    ("scaler-ambiguous", "estimate {t}/scaled/model.safetensors --data {t}/table.npy --samples 3", True),
    ("scaler-as-trained", "estimate {t}/scaled/model.safetensors --data {t}/table.npy --samples 3"
                          " --preprocess as-trained", False),
    ("scaler-none-collapse", "collapse {t}/scaled/model.safetensors --data {t}/table.npy --preprocess none", False),
]
CLI_TEXT_ONLY = {  # refusals of a flag's text or of --plot's folder, checked before any library call
    "compare-sizes-zero", "compare-sizes-words", "compare-mc-zero", "collapse-plot-no-folder",
    "compare-plot-no-folder"}
LIBRARY_COMMANDS = ("estimate ", "collapse ", "inspect ", "compare ")


def borrowed(cases: list, rename: dict[str, str]) -> list[tuple[str, str, bool]]:
    """The hostile suites' refusals (exit 1) of the measuring commands, with their folders renamed here."""
    out = []
    for name, line, code, _ in cases:
        if code == 1 and line.startswith(LIBRARY_COMMANDS) and name not in CLI_TEXT_ONLY:
            for old, new in rename.items():
                line = line.replace(old, new)
            out.append((name, line, True))
    return out


ALL = [*MINE, *[(f"bad-{n}", a, r) for n, a, r in borrowed(bad_inputs.CASES, {"{b}": "{c}"})],
       *[(f"wild-bad-{n}", a, r) for n, a, r in borrowed(wild_bad_inputs.WILD_CASES, {})]]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoints of {t}: each built as the CLI test that covers it builds it, small."""
    t = tmp_path_factory.mktemp("front_door")
    torch.manual_seed(1)
    np.save(t / "x4.npy", torch.rand(N_ROWS, 4).numpy())
    np.save(t / "x5.npy", torch.randn(N_ROWS, 5).numpy())
    np.save(t / "x6.npy", torch.rand(N_ROWS, 6).numpy())
    np.save(t / "x7.npy", torch.randn(N_ROWS, 7).numpy())
    torch.save(MSEVAE(5, 2).state_dict(), t / "mse.pt")
    mse4 = MSEVAE(4, 2).state_dict()
    torch.save({**mse4, "pseudo_inputs": torch.rand(10, 4)}, t / "vamp.pt")
    torch.save({**mse4, "mixture_logits": torch.zeros(5), "prior_means": torch.zeros(5, 2)}, t / "mixture.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in mse4.items()}, "epoch": 1, "global_step": 9,
                "pytorch-lightning_version": "2.6.6", "hyper_parameters": {"recon_loss": "bce"}}, t / "bce.ckpt")
    build_pytorch_vae(t)
    build_bernoulli(t)
    saved(t, "VAE", reconstruction_loss="bce")
    for name in ("VAMP", "VAE_IAF", "VAE_LinNF"):
        saved(t, name)
    build_mlp(t)
    build_authors(t)
    build_scaled(t)
    return t


def build_pytorch_vae(t: Path) -> None:
    """PyTorch-VAE's VanillaVAE in a Lightning .ckpt, with 8x8x3 images and the same rows flat."""
    torch.manual_seed(0)
    vae = PyTorchVAELayout().eval()
    torch.save({"state_dict": {f"model.{k}": v for k, v in vae.state_dict().items()}, "epoch": 9, "global_step": 90,
                "pytorch-lightning_version": "1.9.0"}, t / "last.ckpt")
    x = torch.rand(N_ROWS, 3, 8, 8) * 2 - 1
    np.save(t / "images.npy", x.numpy())
    np.save(t / "flat.npy", x.reshape(N_ROWS, -1).numpy())


def build_bernoulli(t: Path) -> None:
    """pytorch/examples' VAE (sigmoid output, BCE loss) trained briefly on binary pixels."""
    (t / "examples_vae.py").write_text(EXAMPLES_VAE)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(N_ROWS, 2, generator=gen) @ torch.rand(2, 12, generator=gen) > 0.6).float()
    torch.manual_seed(0)
    torch.save(train_bound(examples_vae_class(t)(), x, steps=200).state_dict(), t / "bern.pth")
    save_data_as(t / "bern.npy", x)


def examples_vae_class(t: Path) -> type:
    spec = importlib.util.spec_from_file_location("front_door_examples_vae", t / "examples_vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VAE


def build_mlp(t: Path) -> None:
    """A tanh MLP trained a little, so that the data's scores tell its reading."""
    torch.manual_seed(3)
    vae = PlainMLP(7, 2)
    x = torch.from_numpy(np.load(t / "x7.npy"))
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for _ in range(100):
        nu, log_tau2 = vae.encode(x)
        z = nu + (0.5 * log_tau2).exp() * torch.randn_like(nu)
        log_sigma2 = 2 * torch.nn.functional.softplus(vae.noise_std).log()
        ll = -0.5 * (log_sigma2 + (x - vae.decode(z)).pow(2) / log_sigma2.exp()).sum(-1)
        loss = -(ll - 0.5 * (nu.pow(2) + log_tau2.exp() - log_tau2 - 1).sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(vae.state_dict(), t / "mlp.pt")


def build_authors(t: Path) -> None:
    """Each of the authors' families trained on pPCA rows and saved as `vae`; main.py's VAE with its own class."""
    x = ppca_rows(d=5)
    save_data_as(t / "ppca.npy", x)
    for i, family in enumerate(AUTHORS.values()):
        torch.manual_seed(1)
        (t / f"authors{i}").mkdir()
        torch.save(train_bound(family(5, 2), x, steps=200).state_dict(), t / f"authors{i}" / "vae")
    (t / "main").mkdir()
    authors_main_setup(t / "main", 6, 4)


def build_scaled(t: Path) -> None:
    """A VAE-1 that `train --scale standard` wrote, and its raw table."""
    rng = np.random.default_rng(4)
    np.save(t / "table.npy", rng.normal(3, 2, (200, 5)).astype(np.float32))
    said = invoke(["train", "vae1", "--data", str(t / "table.npy"), "--scale", "standard", "--hidden", "8",
                   "--epochs", "1", "--out", str(t / "scaled"), "--quiet"])
    assert said.exit_code == 0, said.output


def save_data_as(path: Path, x: torch.Tensor) -> None:
    np.save(path, x.numpy().astype(np.float32))


@pytest.fixture()
def folders(kit: Path, bad: Path, wild: Path, wbad: Path, run_dir: Path, made: Path) -> dict[str, Path]:
    return {"k": kit, "c": bad, "w": wild, "b": wbad, "r": run_dir, "t": made}


@pytest.mark.parametrize(("line", "refused"), [c[1:] for c in ALL], ids=[c[0] for c in ALL])
def test_the_front_door_says_what_the_command_line_says(folders: dict[str, Path], line: str, refused: bool) -> None:
    argv = line.format(**folders).split()
    if refused:
        assert_same_refusal(argv)
    else:
        assert_same_reading(argv)


def test_the_cases_are_distinct_and_cover_both_answers() -> None:
    assert len({c[0] for c in ALL}) == len({c[1] for c in ALL}) == len(ALL)
    assert sum(not c[2] for c in ALL) >= 40 and sum(c[2] for c in ALL) >= 150


# ---------------------------------------------------------------------------------------------- live modules, data


def test_a_live_module_reads_as_its_state_dict_under_model(kit: Path, wild: Path, tmp_path: Path) -> None:
    """`estimate(module, rows)` against the CLI on the same weights saved as a state_dict, read with --model."""
    vae = user_model_class(tmp_path)(D, 2)
    vae.load_state_dict(torch.load(wild / "sd.pt", weights_only=True))
    x = np.load(kit / "x.npy")
    argv = ["estimate", str(wild / "sd.pt"), "--data", str(kit / "x.npy"), "--model", f"{wild / 'model.py'}:VAE",
            "--samples", "5"]
    said = cli_json(argv)
    got = as_printed(entropy_elbo.estimate(vae, x, samples=5).to_dict())
    read, live = said.pop("extra")["checkpoint"], got.pop("extra")["checkpoint"]
    said.pop("assumptions"), got.pop("assumptions")
    assert_same(said, got)
    for part in ("encoder", "decoder"):
        assert_same({k: read[part][k] for k in ("name", "param", "kind", "value")},
                    {k: live[part][k] for k in ("name", "param", "kind", "value")})
    said_col = cli_json(["collapse", *argv[1:-2]])
    got_col = as_printed(entropy_elbo.collapse(vae, x).to_dict())
    assert_same({k: v for k, v in said_col.items() if k not in ("source", "checkpoint", "assumptions")}, got_col)


DATA_FORMS = {
    "array": lambda x: x,
    "tensor": torch.from_numpy,
    "batches": lambda x: [x[:25], x[25:]],
    "tensor-batches": lambda x: [torch.from_numpy(x[:25]), torch.from_numpy(x[25:])],
    "generator": lambda x: (b for b in (x[:25], x[25:])),
}


@pytest.mark.parametrize("form", list(DATA_FORMS))
@pytest.mark.parametrize(("checkpoint", "flags"), [
    ("{k}/vae1.safetensors", {}),
    ("{w}/sd.pt", {"activation": "relu", "output_activation": "linear", "head_activation": False}),
    ("{w}/pythae", {"decoder_variance": 0.5}),
], ids=["ours", "wild", "pythae"])
def test_data_as_a_path_an_array_or_batches_gives_the_same_numbers(folders: dict[str, Path], checkpoint: str,
                                                                   flags: dict[str, object], form: str) -> None:
    source, path = checkpoint.format(**folders), folders["k"] / "x.npy"
    rows = DATA_FORMS[form](np.load(path))
    want = entropy_elbo.estimate(source, str(path), samples=5, batch_size=25, **flags).to_dict()
    assert_same(as_printed(want), as_printed(entropy_elbo.estimate(source, rows, samples=5, batch_size=25,
                                                                    **flags).to_dict()))
    want = entropy_elbo.collapse(source, str(path), batch_size=25, **flags).to_dict()
    rows = DATA_FORMS[form](np.load(path))  # a generator is read once
    assert_same(as_printed(want), as_printed(entropy_elbo.collapse(source, rows, batch_size=25, **flags).to_dict()))


def test_the_monitor_refuses_a_bernoulli_module_given_a_variance_as_estimate_does(made: Path) -> None:
    vae = examples_vae_class(made)()
    vae.load_state_dict(torch.load(made / "bern.pth", weights_only=True))
    rows = torch.from_numpy(np.load(made / "bern.npy"))
    with pytest.raises(EntropyElboError) as by_estimate:
        entropy_elbo.estimate(vae, rows, samples=2, decoder_variance=1.0)
    with pytest.raises(EntropyElboError) as by_monitor:
        Monitor(vae, rows, samples=2, options=LoadOptions(decoder_variance=1.0))
    assert type(by_monitor.value) is type(by_estimate.value)
    assert str(by_monitor.value) == str(by_estimate.value)
    assert "Bernoulli" in str(by_estimate.value)


def test_a_callers_load_options_are_not_changed_by_scoring_on_data(folders: dict[str, Path]) -> None:
    options = LoadOptions(activation="relu", output_activation="linear", head_activation=False)
    x = np.load(folders["k"] / "x.npy")
    intro = entropy_elbo.inspect(f"{folders['w']}/sd.pt", x, options=options)
    entropy_elbo.estimate(f"{folders['w']}/sd.pt", x, samples=2, options=options)
    assert intro is not None and options.rows is None and options.input_shape is None  # each call scored a copy
