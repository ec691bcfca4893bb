"""Every bad input the CLI can meet today: exit 1 (our error) or 2 (click usage), one 'Error:' line, no traceback.

Each case names the command line (``{k}``: the valid kit, ``{b}``: the hostile files) and what the one line
must name (the file, the key, the shape or the option). The count of CASES is the number of distinct bad inputs.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_helpers import Marker, assert_user_error, config_with, invoke, resave

from entropy_elbo.cli import main

NO_CUDA = not torch.cuda.is_available()


def set_(key: str, index: tuple, value: float):  # noqa: ANN201
    def change(state: dict) -> None:
        state[key][index] = value

    return change


@pytest.fixture(scope="session")
def bad(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write every hostile file once."""
    b = tmp_path_factory.mktemp("bad")
    vae1, lin = kit / "vae1.safetensors", kit / "linear.safetensors"
    raw, x = vae1.read_bytes(), np.load(kit / "x.npy")
    (b / "adir").mkdir()
    (b / "folder.safetensors").mkdir()
    (b / "afile").write_text("a plain file, not a folder")
    (b / "npy.safetensors").write_bytes((kit / "x.npy").read_bytes())
    (b / "ckpt.npy").write_bytes(raw)
    (b / "x.json").write_text(json.dumps(x.tolist()))
    (b / "hello.txt").write_text("hello\n")
    (b / "empty.safetensors").write_bytes(b"")
    (b / "half.safetensors").write_bytes(raw[: len(raw) // 2])
    (b / "short.safetensors").write_bytes(raw[:-3])
    (b / "five.safetensors").write_bytes(raw[:5])
    (b / "empty.npy").write_bytes(b"")
    (b / "empty.csv").write_bytes(b"")
    (b / "empty.npz").write_bytes(b"")
    np.save(b / "full.npy", x)
    (b / "trunc.npy").write_bytes((b / "full.npy").read_bytes()[:-10])
    np.savez(b / "full.npz", x=x)
    (b / "trunc.npz").write_bytes((b / "full.npz").read_bytes()[:300])
    resave(vae1, b / "nan.safetensors", set_("fc_mu.weight", (0, 0), float("nan")))
    resave(vae1, b / "inf.safetensors", set_("log_sigma2", (), float("inf")))
    resave(vae1, b / "ninf.safetensors", set_("log_sigma2", (), -float("inf")))
    resave(vae1, b / "hugevar.safetensors", set_("log_sigma2", (), 1e30))
    resave(vae1, b / "zerovar.safetensors", set_("log_sigma2", (), -1e30))
    resave(lin, b / "zerotau.safetensors", set_("log_tau2", (0,), -200.0))
    resave(lin, b / "hugesigma.safetensors", set_("log_sigma2", (), 200.0))
    resave(vae1, b / "tauinf.safetensors", set_("fc_var.bias", (1,), 1e4))
    resave(vae1, b / "tauzero.safetensors", set_("fc_var.bias", (0,), -1e4))
    resave(vae1, b / "shape.safetensors", lambda s: s.update({"fc_mu.weight": torch.zeros(3, 8)}))
    resave(vae1, b / "missing.safetensors", lambda s: s.pop("fc_var.bias"))
    resave(vae1, b / "badjson.safetensors", meta_change=lambda m: m.update(config="{not json"))
    resave(vae1, b / "neghidden.safetensors", meta_change=config_with(vae1, hidden=[-5]))
    resave(vae1, b / "hugedim.safetensors", meta_change=config_with(vae1, data_dim=10**12))
    resave(vae1, b / "unknownkind.safetensors", meta_change=config_with(vae1, kind="vae9"))
    np.save(b / "nan.npy", np.where(np.arange(200).reshape(50, 4) == 9, np.nan, x))
    np.save(b / "inf.npy", np.where(np.arange(200).reshape(50, 4) == 13, -np.inf, x))
    np.save(b / "toobig.npy", np.full((3, 4), 1e300))
    np.save(b / "object.npy", x.astype(object), allow_pickle=True)
    np.save(b / "complex.npy", x.astype(np.complex64))
    np.save(b / "strings.npy", x.astype(str))
    np.save(b / "rows0.npy", x[:0])
    np.save(b / "cols0.npy", x[:, :0])
    np.save(b / "cols3.npy", x[:, :3])
    np.save(b / "d1.npy", x[:, 0])
    np.save(b / "d3.npy", x.reshape(50, 2, 2))
    np.savez(b / "two.npz", a=x, b=x)
    (b / "ragged.csv").write_text("1,2,3,4\n5,6,7\n")
    (b / "words.csv").write_text("1,2,3,4\n5,six,7,8\n")
    torch.save({"state_dict": {"w": Marker(str(b / "RAN_pt"))}}, b / "evil.pt")
    (b / "evil.pkl").write_bytes(pickle.dumps(Marker(str(b / "RAN_pkl"))))
    np.save(b / "evil.npy", np.array([Marker(str(b / "RAN_npy"))], dtype=object), allow_pickle=True)
    np.savez(b / "evil.npz", x=np.array([Marker(str(b / "RAN_npz"))], dtype=object))
    with zipfile.ZipFile(b / "notnpy.npz", "w") as z:
        z.writestr("x.txt", "hello")
    return b


E = "estimate {k}/vae1.safetensors --data {k}/x.npy"
T = "train vae1 --data {k}/x.npy --out {b}/out.safetensors --epochs 1 --quiet"
CASES = [  # (id, command line, exit code, what the error line must name)
    # files that are missing, folders, or of the wrong format or extension
    ("ckpt-missing", "estimate {b}/nothere.safetensors --data {k}/x.npy", 1, ["nothere.safetensors", "no such"]),
    ("data-missing", "estimate {k}/vae1.safetensors --data {b}/nothere.npy", 1, ["nothere.npy", "no such"]),
    ("ckpt-is-folder", "estimate {b}/adir --data {k}/x.npy", 1, ["adir", "folder without model_config.json"]),
    ("data-is-folder", "estimate {k}/vae1.safetensors --data {b}/adir", 1, ["adir", "folder"]),
    ("ckpt-is-npy", "estimate {b}/npy.safetensors --data {k}/x.npy", 1, ["npy.safetensors", "not a safetensors"]),
    ("data-is-ckpt", "estimate {k}/vae1.safetensors --data {b}/ckpt.npy", 1, ["ckpt.npy", "not a .npy"]),
    ("data-extension", "estimate {k}/vae1.safetensors --data {b}/x.json", 1, ["x.json", "extension '.json'"]),
    ("data-text", "estimate {k}/vae1.safetensors --data {b}/hello.txt", 1, ["hello.txt", "0 rows"]),
    ("data-zip-not-npz", "estimate {k}/vae1.safetensors --data {b}/notnpy.npz", 1, ["notnpy.npz", "'x.txt'"]),
    # zero-byte and truncated checkpoints and data
    ("ckpt-empty", "estimate {b}/empty.safetensors --data {k}/x.npy", 1, ["empty.safetensors", "empty"]),
    ("ckpt-half", "estimate {b}/half.safetensors --data {k}/x.npy", 1, ["half.safetensors", "truncated"]),
    ("ckpt-short", "estimate {b}/short.safetensors --data {k}/x.npy", 1, ["short.safetensors", "truncated"]),
    ("ckpt-5-bytes", "estimate {b}/five.safetensors --data {k}/x.npy", 1, ["five.safetensors", "truncated"]),
    ("npy-empty", "estimate {k}/vae1.safetensors --data {b}/empty.npy", 1, ["empty.npy", "empty"]),
    ("csv-empty", "estimate {k}/vae1.safetensors --data {b}/empty.csv", 1, ["empty.csv", "empty"]),
    ("npz-empty", "estimate {k}/vae1.safetensors --data {b}/empty.npz", 1, ["empty.npz", "not a .npz"]),
    ("npy-truncated", "estimate {k}/vae1.safetensors --data {b}/trunc.npy", 1, ["trunc.npy", r"truncated.*\(50, 4\)"]),
    ("npz-truncated", "estimate {k}/vae1.safetensors --data {b}/trunc.npz", 1, ["trunc.npz", "corrupt"]),
    # checkpoints with NaN/Inf weights, non-positive or infinite variances, damaged shapes and configs
    ("w-nan", "estimate {b}/nan.safetensors --data {k}/x.npy", 1, ["nan.safetensors", "'fc_mu.weight'", "NaN"]),
    ("sigma2-inf", "estimate {b}/inf.safetensors --data {k}/x.npy", 1, ["inf.safetensors", "'log_sigma2'"]),
    ("sigma2-zero-ninf", "estimate {b}/ninf.safetensors --data {k}/x.npy", 1, ["ninf.safetensors", "'log_sigma2'"]),
    ("sigma2-overflow", "estimate {b}/hugevar.safetensors --data {k}/x.npy", 1, ["hugevar", "'log_sigma2'", "inf"]),
    ("sigma2-underflow", "estimate {b}/zerovar.safetensors --data {k}/x.npy", 1, ["zerovar", "'log_sigma2'", "zero"]),
    ("linear-tau2-zero", "estimate {b}/zerotau.safetensors --data {k}/x.npy", 1, ["zerotau", "'log_tau2'", "zero"]),
    ("linear-sigma2-huge", "estimate {b}/hugesigma.safetensors --data {k}/x.npy", 1, ["hugesigma", "'log_sigma2'"]),
    ("encoder-tau2-inf", "estimate {b}/tauinf.safetensors --data {k}/x.npy", 1, ["data row 0, latent 1", "tau"]),
    ("encoder-tau2-zero", "estimate {b}/tauzero.safetensors --data {k}/x.npy", 1, ["data row 0, latent 0", "tau"]),
    ("ckpt-wrong-shape", "estimate {b}/shape.safetensors --data {k}/x.npy", 1, ["shape.safetensors", r"\(3, 8\)"]),
    ("ckpt-missing-key", "estimate {b}/missing.safetensors --data {k}/x.npy", 1, ["missing.safe", "'fc_var.bias'"]),
    ("ckpt-config-json", "estimate {b}/badjson.safetensors --data {k}/x.npy", 1, ["badjson.safetensors", "damaged"]),
    ("ckpt-config-neg", "estimate {b}/neghidden.safetensors --data {k}/x.npy", 1, ["neghidden", "hidden=-5"]),
    ("ckpt-config-huge", "estimate {b}/hugedim.safetensors --data {k}/x.npy", 1, ["hugedim", "data_dim=1000000000000"]),
    ("ckpt-config-kind", "estimate {b}/unknownkind.safetensors --data {k}/x.npy", 1, ["unknownkind", "'vae9' unknown"]),
    # data with NaN/Inf, bad dtypes, no rows, the wrong number of columns, 1-d or 3-d
    ("data-nan", "estimate {k}/vae1.safetensors --data {b}/nan.npy", 1, ["nan.npy", "row 2, column 1", "nan"]),
    ("data-inf", "estimate {k}/vae1.safetensors --data {b}/inf.npy", 1, ["inf.npy", "row 3, column 1", "inf"]),
    ("data-float32-overflow", "estimate {k}/vae1.safetensors --data {b}/toobig.npy", 1, ["toobig.npy", "row 0"]),
    ("data-object", "estimate {k}/vae1.safetensors --data {b}/object.npy", 1, ["object.npy", "dtype object"]),
    ("data-complex", "estimate {k}/vae1.safetensors --data {b}/complex.npy", 1, ["complex.npy", "complex64"]),
    ("data-strings", "estimate {k}/vae1.safetensors --data {b}/strings.npy", 1, ["strings.npy", "dtype <U"]),
    ("data-0-rows", "estimate {k}/vae1.safetensors --data {b}/rows0.npy", 1, ["rows0.npy", r"\(0, 4\)", "0 rows"]),
    ("data-0-cols", "estimate {k}/vae1.safetensors --data {b}/cols0.npy", 1, ["cols0.npy", r"\(50, 0\)"]),
    ("data-3-cols", "estimate {k}/vae1.safetensors --data {b}/cols3.npy", 1, ["cols3.npy", "3 values", "expects 4"]),
    ("data-1d", "estimate {k}/vae1.safetensors --data {b}/d1.npy", 1, ["d1.npy", r"\(50,\)"]),
    ("data-3d", "estimate {k}/vae1.safetensors --data {b}/d3.npy", 1, ["d3.npy", r"\(50, 2, 2\)"]),
    ("csv-ragged", "estimate {k}/vae1.safetensors --data {b}/ragged.csv", 1, ["ragged.csv", "line 2"]),
    ("csv-words", "estimate {k}/vae1.safetensors --data {b}/words.csv", 1, ["words.csv", "'six'", "line 2"]),
    ("npz-no-key", "estimate {k}/vae1.safetensors --data {b}/two.npz", 1, ["two.npz", "--key"]),
    ("npz-wrong-key", E.replace("{k}/x.npy", "{b}/two.npz") + " --key c", 1, ["two.npz", "'c'"]),
    ("key-on-npy", E + " --key a", 1, ["x.npy", "--key 'a'"]),
    # counts, sizes, seeds and devices
    ("samples-negative", E + " --samples -1", 1, ["--samples", "-1"]),
    ("batch-zero", E + " --batch-size 0", 1, ["--batch-size", "got 0"]),
    ("batch-negative", E + " --batch-size -5", 1, ["--batch-size", "-5"]),
    ("samples-not-int", E + " --samples abc", 2, ["--samples", "'abc'"]),
    ("seed-negative", E + " --seed -1", 2, ["--seed", "-1"]),
    ("seed-overflow", E + " --seed 99999999999999999999", 2, ["--seed"]),
    ("unknown-option", E + " --nope", 2, ["--nope"]),
    ("device-unknown", E + " --device tpu", 1, ["--device", "'tpu'"]),
    ("device-meta", E + " --device meta", 1, ["--device", "'meta'"]),
    ("device-cpu-index", E + " --device cpu:1", 1, ["--device cpu:1"]),
    ("device-cuda-absent", E + (" --device cuda" if NO_CUDA else " --device cuda:99"), 1, ["--device cuda"]),
    ("device-cuda-index", E + " --device cuda:7", 1, ["--device cuda:7"]),
    # pickles that would run code: refused, and nothing ran (checked in test_no_pickle_ran)
    ("pickle-pt", "estimate {b}/evil.pt --data {k}/x.npy", 1, ["evil.pt", "refused"]),
    ("pickle-pkl", "estimate {b}/evil.pkl --data {k}/x.npy", 1, ["evil.pkl", "safe loader cannot read"]),
    ("pickle-npy", "estimate {k}/vae1.safetensors --data {b}/evil.npy", 1, ["evil.npy", "dtype object"]),
    ("pickle-npz", "estimate {k}/vae1.safetensors --data {b}/evil.npz", 1, ["evil.npz", "pickle is never loaded"]),
    ("pickle-train-npy", "train vae1 --data {b}/evil.npy --out {b}/o.safetensors", 1, ["evil.npy", "object"]),
    # training options and outputs
    ("out-no-folder", T.replace("{b}/out", "{b}/nodir/out"), 1, ["nodir", "does not exist"]),
    ("out-under-file", T.replace("{b}/out", "{b}/afile/out"), 1, ["afile", "not a folder"]),
    ("out-is-folder", T.replace("{b}/out.safetensors", "{b}/folder.safetensors"), 1, ["folder.safetensors", "folder"]),
    ("out-extension", T.replace("out.safetensors", "out.pt"), 1, ["out.pt", ".safetensors"]),
    ("epochs-zero", T.replace("--epochs 1", "--epochs 0"), 1, ["--epochs", "got 0"]),
    ("epochs-negative", T.replace("--epochs 1", "--epochs -3"), 1, ["--epochs", "-3"]),
    ("train-batch-zero", T + " --batch-size 0", 1, ["--batch-size", "got 0"]),
    ("train-samples-zero", T + " --samples 0", 1, ["--samples", "got 0"]),
    ("train-samples-negative", T + " --samples -2", 1, ["--samples", "-2"]),
    ("latents-zero", T + " --latents 0", 1, ["--latents 0", "D=4"]),
    ("latents-above-D", T + " --latents 5", 1, ["--latents 5", "D=4"]),
    ("lr-nan", T + " --lr nan", 1, ["--lr", "nan"]),
    ("lr-negative", T + " --lr -0.1", 1, ["--lr", "-0.1"]),
    ("init-sigma2-huge", T + " --init-log-sigma2 1e30", 1, ["--init-log-sigma2"]),
    ("init-sigma2-nan", T + " --init-log-sigma2 nan", 1, ["--init-log-sigma2"]),
    ("hidden-words", T + " --hidden a,b", 1, ["--hidden", "'a,b'"]),
    ("hidden-zero", T + " --hidden 0", 1, ["--hidden", "'0'"]),
    ("activation-unknown", T + " --activation foo", 2, ["--activation", "'foo' is not one of"]),
    ("model-unknown", T.replace("train vae1", "train vae9"), 2, ["'vae9'"]),
    ("train-data-nan", T.replace("{k}/x.npy", "{b}/nan.npy"), 1, ["nan.npy", "row 2, column 1"]),
    ("train-data-0-rows", T.replace("{k}/x.npy", "{b}/rows0.npy"), 1, ["rows0.npy", "0 rows"]),
    ("train-data-unknown", T.replace("{k}/x.npy", "nosuchset"), 1, ["nosuchset", "ppca"]),
    ("train-cuda-absent", T + (" --device cuda" if NO_CUDA else " --device cuda:99"), 1, ["--device cuda"]),
    ("train-seed-negative", T + " --seed -1", 2, ["--seed"]),
    # the data command's outputs and counts
    ("data-out-no-folder", "data ppca --out {b}/nodir/p.npy -n 10", 1, ["nodir", "does not exist"]),
    ("data-out-under-file", "data ppca --out {b}/afile/p.npy -n 10", 1, ["afile", "not a folder"]),
    ("data-out-extension", "data ppca --out {b}/p.txt -n 10", 1, ["p.txt", "'.txt'"]),
    ("data-n-zero", "data ppca --out {b}/p.npy -n 0", 1, ["ppca", "got 0"]),
    ("data-n-negative", "data ppca --out {b}/p.npy -n -3", 1, ["ppca", "-3"]),
    ("data-unknown-set", "data nosuchset --out {b}/p.npy", 2, ["'nosuchset'"]),
]


@pytest.mark.parametrize(("args", "code", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error(kit: Path, bad: Path, args: str, code: int, names: list[str]) -> None:
    result = invoke(args.format(k=kit, b=bad).split())
    assert_user_error(result, code, *names)
    assert not (bad / "out.safetensors").exists() and not (bad / "o.safetensors").exists()
    assert not list(bad.glob(".*.tmp")), "a temporary file was left behind"


def test_cases_are_distinct() -> None:
    assert len({c[0] for c in CASES}) == len({c[1] for c in CASES}) == len(CASES)


def test_no_pickle_ran(kit: Path, bad: Path) -> None:
    for name in ("pt", "pkl", "npy", "npz"):
        invoke(["estimate", bad / f"evil.{name}", "--data", kit / "x.npy"])
        invoke(["estimate", kit / "vae1.safetensors", "--data", bad / f"evil.{name}"])
    assert not list(bad.glob("RAN_*")), "a hostile pickle ran code"


def test_a_bug_of_ours_is_still_one_line(kit: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr("entropy_elbo.measure.estimate_batches", broken)
    result = invoke(["estimate", kit / "vae1.safetensors", "--data", kit / "x.npy"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "Error: internal error ZeroDivisionError: simulated bug; rerun with --debug and report it")
    with pytest.raises(ZeroDivisionError):  # --debug lets it through (the traceback for a bug report)
        from click.testing import CliRunner

        CliRunner().invoke(main, ["--debug", "estimate", str(kit / "vae1.safetensors"), "--data", str(kit / "x.npy")],
                           catch_exceptions=False)


# ---------------------------------------------------------------------------------------------- correct numbers


def estimate_json(ckpt: Path, data: Path, *extra: str) -> dict:
    result = invoke(["estimate", ckpt, "--data", data, "--json", "--samples", "5", *extra])
    assert result.exit_code == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float16", "float64", "bool"])
def test_other_numeric_dtypes_give_the_float32_answer(kit: Path, tmp_path: Path, dtype: str) -> None:
    x = (np.random.default_rng(1).normal(size=(30, 4)) * 3).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x32.npy", x.astype(np.float32))  # the conversion done independently
    got = estimate_json(kit / "vae1.safetensors", tmp_path / "x.npy")
    assert got == estimate_json(kit / "vae1.safetensors", tmp_path / "x32.npy")


def test_image_stacks_and_renamed_checkpoints_give_the_flat_answer(kit: Path, tmp_path: Path) -> None:
    x = np.load(kit / "x.npy")
    np.save(tmp_path / "img.npy", x.reshape(50, 1, 2, 2))
    (tmp_path / "renamed.pt").write_bytes((kit / "linear.safetensors").read_bytes())  # content decides, not suffix
    want = estimate_json(kit / "linear.safetensors", kit / "x.npy")
    assert estimate_json(tmp_path / "renamed.pt", tmp_path / "img.npy") == want
    assert estimate_json(kit / "vae1.safetensors", tmp_path / "img.npy") == estimate_json(
        kit / "vae1.safetensors", kit / "x.npy")
