"""Bad inputs for the checkpoint loaders from the wild and the newer commands (inspect, collapse, compare, select,
plot, train runs with --resume/--preset/--scale/--holdout): exit 1 (our error) or 2 (click usage), one 'Error:'
line naming the file, key, shape or option, no traceback, and no pickle ever run.

``{k}``: the round-1 kit (x.npy is 50 x 4), ``{w}``: valid wild checkpoints, ``{b}``: the hostile files,
``{r}``: a finished 2-epoch training run. WILD_CASES counts the distinct bad inputs added by this file.
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_helpers import Marker, assert_user_error, invoke
from safetensors.torch import save_file
from wild_kit import build_wild


@pytest.fixture(scope="session")
def wild(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("wild")
    build_wild(w)
    return w


@pytest.fixture(scope="session")
def run_dir(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished training run (linear VAE, 2 epochs on the kit's 50 rows) to resume, damage and plot."""
    r = tmp_path_factory.mktemp("runs") / "run"
    result = invoke(["train", "linear", "--data", kit / "x.npy", "--out", r, "--epochs", "2", "--batch-size", "25",
                     "--samples", "1", "--holdout", "0.2", "--quiet"])
    assert result.exit_code == 0, result.stderr
    return r


def copy_run(src: Path, dst: Path, change=None) -> Path:  # noqa: ANN001
    shutil.copytree(src, dst)
    if change:
        change(dst)
    return dst


def edit_json(name: str, edit):  # noqa: ANN001, ANN201
    def change(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        edit(data)
        (folder / name).write_text(json.dumps(data))

    return change


@pytest.fixture(scope="session")
def wbad(kit: Path, wild: Path, run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write every hostile wild file once."""
    b = tmp_path_factory.mktemp("wbad")
    state = torch.load(wild / "sd.pt", weights_only=True)
    script = (wild / "script.pt").read_bytes()
    (b / "text.pt").write_text("hello, not a checkpoint\n")
    (b / "npy.ckpt").write_bytes((kit / "x.npy").read_bytes())
    with zipfile.ZipFile(b / "zip.pth", "w") as z:
        z.writestr("x.txt", "hello")
    (b / "empty.pt").write_bytes(b"")
    torch.save([torch.zeros(3), torch.ones(2)], b / "list.pt")
    torch.save(torch.zeros(3), b / "tensor.pt")
    torch.save({"a": 1, "b": "text", "c": [1, 2]}, b / "junk.pt")
    torch.save({"state_dict": {"w": 1, "x": "text"}}, b / "junkinner.pt")
    torch.save({"lr": 0.1, "epoch": 3}, b / "junk.ckpt")
    torch.save({**state, "note": "a string", "step": 7}, b / "mixed.pt")
    torch.save({k: (v * 0).long() for k, v in state.items()}, b / "ints.pt")
    torch.save({}, b / "emptydict.pt")
    nan = {k: v.clone() for k, v in state.items()}
    nan["fc_mu.weight"][0, 0] = float("nan")
    torch.save(nan, b / "nan.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in nan.items()}, "global_step": 1}, b / "nan.ckpt")
    save_file(nan, b / "nan.safetensors")
    torch.save({**state, "log_sigma2": torch.tensor(float("inf"))}, b / "infvar.pt")
    torch.save({**state, "fc_var.bias": torch.full((2,), 1e4)}, b / "hugetau.pt")
    torch.save({k: v for k, v in state.items() if k != "fc_var.bias"}, b / "missing.pt")
    torch.save({k: v for k, v in state.items() if k != "fc_var.weight"}, b / "noheadweight.pt")
    torch.save({**state, "extra.weight": torch.zeros(2, 2)}, b / "extra.pt")
    torch.save({**state, "fc_mu.weight": torch.zeros(3, 8)}, b / "shape.pt")
    torch.save({**state, "decoder.weight": torch.zeros(5, 2), "decoder.bias": torch.zeros(5)}, b / "dshape.pt")
    torch.save({k: v for k, v in state.items() if not k.startswith("decoder")}, b / "nodecoder.pt")
    (b / "half_script.pt").write_bytes(script[: len(script) // 2])
    (b / "tail_script.pt").write_bytes(script[:-60])
    # the archive's data.pkl replaced by a pickle that would write a file
    with zipfile.ZipFile(wild / "script.pt") as src, zipfile.ZipFile(b / "evil_script.pt", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(Marker(str(b / "RAN_script")), protocol=2)
            dst.writestr(item, data)
    torch.save({"state_dict": state, "payload": Marker(str(b / "RAN_pt"))}, b / "evil.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 1,
                "hyper_parameters": Marker(str(b / "RAN_ckpt"))}, b / "evil.ckpt")
    torch.save(Marker(str(b / "RAN_pth")), b / "evil.pth")
    torch.save({"state_dict": state, "payload": Marker(str(b / "RAN_p4"))}, b / "evil_p4.pt", pickle_protocol=4)
    np.savez(b / "evil.npz", x=np.array([Marker(str(b / "RAN_npz"))], dtype=object))

    def pythae(name: str, config: str | None = '{"name": "VAEConfig", "input_dim": [4], "latent_dim": 2}',
               model: bytes | None = (wild / "pythae" / "model.pt").read_bytes()) -> Path:
        folder = b / name
        folder.mkdir()
        if config is not None:
            (folder / "model_config.json").write_text(config)
        if model is not None:
            (folder / "model.pt").write_bytes(model)
        return folder

    pythae("py_badjson", config="{not json")
    pythae("py_list", config="[1, 2]")
    pythae("py_nomodel", model=None)
    pythae("py_textmodel", model=b"hello")
    pythae("py_junkmodel", model=(b / "junk.pt").read_bytes())
    torch.save({"model_state_dict": torch.load(wild / "pythae" / "model.pt")["model_state_dict"],
                "payload": Marker(str(b / "RAN_pythae_pt"))}, b / "evil_pythae.pt")
    pythae("py_evilmodel", model=(b / "evil_pythae.pt").read_bytes())
    for net in ("encoder", "decoder"):
        folder = pythae(f"py_{net}pkl")
        (folder / f"{net}.pkl").write_bytes(pickle.dumps(Marker(str(b / f"RAN_{net}_pkl"))))
    nested = b / "py_nested" / "final_model"
    nested.mkdir(parents=True)
    (nested / "model.pt").write_bytes((wild / "pythae" / "model.pt").read_bytes())
    # the user's --model files
    (b / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (b / "syntax.py").write_text("def broken(:\n")
    (b / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (b / "notmodule.py").write_text("def make():\n    return 3\n")
    (b / "model.txt").write_text((wild / "model.py").read_text())
    # damaged copies of a finished run
    copy_run(run_dir, b / "run_nojson", lambda f: (f / "run.json").unlink())
    copy_run(run_dir, b / "run_emptyjson", lambda f: (f / "run.json").write_text(""))
    copy_run(run_dir, b / "run_badjson", lambda f: (f / "run.json").write_text("{torn"))
    copy_run(run_dir, b / "run_listjson", lambda f: (f / "run.json").write_text("[1, 2]"))
    copy_run(run_dir, b / "run_noconfig", edit_json("run.json", lambda d: d.pop("model_config")))
    copy_run(run_dir, b / "run_badconfig", edit_json("run.json", lambda d: d.update(model_config="{bad")))
    copy_run(run_dir, b / "run_nosettings", edit_json("run.json", lambda d: d.pop("settings")))
    copy_run(run_dir, b / "run_nodata", edit_json("run.json", lambda d: d["settings"].pop("data")))
    copy_run(run_dir, b / "run_halfstate", lambda f: (f / "state.safetensors").write_bytes(
        (f / "state.safetensors").read_bytes()[:500]))
    copy_run(run_dir, b / "run_modelstate", lambda f: shutil.copy(f / "model.safetensors", f / "state.safetensors"))
    copy_run(run_dir, b / "run_emptylog", lambda f: (f / "log.jsonl").write_text(""))
    copy_run(run_dir, b / "run_junklog", lambda f: (f / "log.jsonl").write_text("not json\n"))
    copy_run(run_dir, b / "run_bigconfig", edit_json("run.json", lambda d: d.update(
        model_config=json.dumps({**json.loads(d["model_config"]), "data_dim": 7}))))
    np.save(b / "cols3.npy", np.load(kit / "x.npy")[:, :3])
    (b / "afile").write_text("a file, not a folder")
    (b / "adir").mkdir()
    return b


READ = " --activation relu --output-activation linear --no-head-activation"  # untrained: data cannot tell
E = "estimate {b}/%s --data {k}/x.npy"
M = " --model {w}/model.py:VAE"
W = "estimate {w}/sd.pt --data {k}/x.npy" + READ
WP = "estimate {w}/pythae --data {k}/x.npy"
I_ = "inspect {b}/%s"
C = "collapse {w}/sd.pt --data {k}/x.npy" + READ
P = "compare {w}/sd.pt --data {k}/x.npy --repeats 2 --mc-samples 1" + READ
S = "select --data {k}/x.npy --latents 1 --batch-size 10 --samples 1 --quiet"
T = "train linear --data {k}/x.npy --out {b}/t_out --epochs 1 --quiet"
R = "train linear --data {k}/x.npy --resume {r}"
WILD_CASES = [  # (id, command line, exit code, what the error line must name)
    # files of the wrong format, empty, or holding something other than tensors
    ("pt-text", E % "text.pt", 1, ["text.pt", "not a checkpoint"]),
    ("ckpt-is-npy", E % "npy.ckpt", 1, ["npy.ckpt", "not a checkpoint"]),
    ("pth-plain-zip", E % "zip.pth", 1, ["zip.pth", "not a checkpoint"]),
    ("pt-empty", E % "empty.pt", 1, ["empty.pt", "empty"]),
    ("pt-list", E % "list.pt", 1, ["list.pt", "list"]),
    ("pt-tensor", E % "tensor.pt", 1, ["tensor.pt", "Tensor"]),
    ("pt-dict-of-junk", E % "junk.pt", 1, ["junk.pt", "keys: a, b, c"]),
    ("pt-inner-junk", E % "junkinner.pt", 1, ["junkinner.pt", "state_dict"]),
    ("ckpt-no-weights", E % "junk.ckpt", 1, ["junk.ckpt", "keys: epoch, lr"]),
    ("pt-mixed-junk", E % "mixed.pt", 1, ["mixed.pt", "'note' \\(str\\)", "not tensors"]),
    ("pt-int-tensors", E % "ints.pt", 1, ["ints.pt", "'encoder.weight'", r"\(8, 4\)", "int64"]),
    ("pt-empty-dict", E % "emptydict.pt", 1, ["emptydict.pt", "without a state_dict"]),
    ("inspect-text", I_ % "text.pt", 1, ["text.pt", "not a checkpoint"]),
    ("inspect-junk", I_ % "junk.pt", 1, ["junk.pt", "keys: a, b, c"]),
    # NaN or infinite weights, bad variances, missing/extra keys and shapes, with and without --model
    ("pt-nan", E % "nan.pt", 1, ["nan.pt", "'fc_mu.weight'", "NaN"]),
    ("ckpt-nan", E % "nan.ckpt", 1, ["nan.ckpt", "'fc_mu.weight'", "NaN"]),
    ("safetensors-nan", E % "nan.safetensors", 1, ["nan.safetensors", "'fc_mu.weight'", "NaN"]),
    ("pt-nan-model", E % "nan.pt" + M, 1, ["nan.pt", "'fc_mu.weight'", "NaN"]),
    ("pt-inf-variance", E % "infvar.pt", 1, ["infvar.pt", "'log_sigma2'", "Inf"]),
    ("pt-encoder-tau-inf", E % "hugetau.pt" + READ, 1, ["data row 0, latent 0", "tau\\^2 zero, infinite"]),
    ("model-missing-key", E % "missing.pt" + M, 1, ["missing.pt", "missing fc_var.bias"]),
    ("model-extra-key", E % "extra.pt" + M, 1, ["extra.pt", "unexpected extra.weight"]),
    ("model-wrong-shape", E % "shape.pt" + M, 1, ["shape.pt", r"fc_mu.weight \(3, 8\) vs \(2, 8\)"]),
    ("model-kwargs-mismatch", W + "" + M + " --model-kwargs {{\"hidden\":6}}", 1,
     ["sd.pt", r"\(8, 4\) vs \(6, 4\)"]),
    ("shapes-head-without-weight", E % "noheadweight.pt", 1, ["noheadweight.pt"]),
    ("shapes-decoder-size", E % "dshape.pt", 1, ["dshape.pt", "decoder"]),
    ("shapes-no-decoder", E % "nodecoder.pt", 1, ["nodecoder.pt", "no decoder layers"]),
    ("data-cols-vs-wild", "estimate {w}/sd.pt --data {b}/cols3.npy", 1, ["cols3.npy"]),
    # TorchScript archives truncated or carrying a hostile pickle
    ("script-half", E % "half_script.pt", 1, ["half_script.pt"]),
    ("script-tail-cut", E % "tail_script.pt", 1, ["tail_script.pt"]),
    ("script-evil-pickle", E % "evil_script.pt", 1, ["evil_script.pt"]),
    # pythae folders
    ("pythae-bad-json", E % "py_badjson", 1, ["py_badjson/model_config.json", "not valid JSON"]),
    ("pythae-json-list", E % "py_list", 1, ["py_list/model_config.json", "JSON object"]),
    ("pythae-no-model-pt", E % "py_nomodel", 1, ["py_nomodel", "no model.pt"]),
    ("pythae-text-model-pt", E % "py_textmodel", 1, ["py_textmodel/model.pt", "not a checkpoint"]),
    ("pythae-junk-model-pt", E % "py_junkmodel", 1, ["py_junkmodel/model.pt", "keys: a, b, c"]),
    ("pythae-nested-no-config", E % "py_nested", 1, ["py_nested", "model_config.json"]),
    ("pythae-encoder-pkl", E % "py_encoderpkl", 1, ["py_encoderpkl", "encoder.pkl", "--trust-code"]),
    ("pythae-decoder-pkl", I_ % "py_decoderpkl", 1, ["py_decoderpkl", "decoder.pkl", "--trust-code"]),
    ("pythae-no-variance", "estimate {w}/pythae --data {k}/x.npy", 1, ["pythae", "--decoder-variance"]),
    # pickles that would write a file, in every loader path: refused (test_no_wild_pickle_ran checks no file)
    ("pickle-pt", E % "evil.pt", 1, ["evil.pt", "refused", "--trust-code"]),
    ("pickle-ckpt", E % "evil.ckpt", 1, ["evil.ckpt", "refused"]),
    ("pickle-pth-top", E % "evil.pth", 1, ["evil.pth", "refused"]),
    ("pickle-protocol-4", E % "evil_p4.pt", 1, ["evil_p4.pt", "protocol", "pickle_protocol=2"]),
    ("pickle-pythae-model-pt", E % "py_evilmodel", 1, ["py_evilmodel/model.pt", "refused"]),
    ("pickle-inspect", I_ % "evil.ckpt", 1, ["evil.ckpt", "refused"]),
    ("pickle-collapse", "collapse {b}/evil.pt --data {k}/x.npy", 1, ["evil.pt", "refused"]),
    ("pickle-compare", "compare {b}/evil.pth --data {k}/x.npy", 1, ["evil.pth", "refused"]),
    ("pickle-with-model", E % "evil.pt" + M, 1, ["evil.pt", "refused"]),
    ("pickle-collapse-data", "collapse {w}/sd.pt --data {b}/evil.npz", 1, ["evil.npz", "pickle"]),
    ("pickle-compare-data", "compare {w}/sd.pt --data {b}/evil.npz", 1, ["evil.npz", "pickle"]),
    ("pickle-select-data", "select --data {b}/evil.npz", 1, ["evil.npz", "pickle"]),
    ("pickle-train-data", "train linear --data {b}/evil.npz --out {b}/t_evil", 1, ["evil.npz", "pickle"]),
    ("pickle-inspect-data", "inspect {w}/sd.pt --data {b}/evil.npz", 1, ["evil.npz", "pickle"]),
    # the user's --model file and its kwargs
    ("model-raises-on-import", W + " --model {b}/raises.py:VAE", 1, ["raises.py", "boom at import"]),
    ("model-syntax-error", W + " --model {b}/syntax.py:VAE", 1, ["syntax.py", "SyntaxError"]),
    ("model-exits-on-import", W + " --model {b}/exits.py:VAE", 1, ["exits.py", "SystemExit"]),
    ("model-missing-class", W + " --model {w}/model.py:Nope", 1, ["model.py", "'Nope'"]),
    ("model-not-a-module", W + " --model {b}/notmodule.py:make", 1, ["make", "int"]),
    ("model-no-file", W + " --model {b}/nothere.py:VAE", 1, ["nothere.py", "no such file"]),
    ("model-no-name", W + " --model {w}/model.py", 1, ["model.py", "FILE.py:NAME"]),
    ("model-not-py", W + " --model {b}/model.txt:VAE", 1, ["model.txt"]),
    ("model-no-such-module", W + " --model nosuchpkg.mod:VAE", 1, ["nosuchpkg.mod"]),
    ("model-kwargs-not-json", W + "" + M + " --model-kwargs {{d:4", 1, ["--model-kwargs", "not valid JSON"]),
    ("model-kwargs-list", W + "" + M + " --model-kwargs [4,2]", 1, ["--model-kwargs", "list"]),
    ("model-kwargs-unknown", W + "" + M + " --model-kwargs {{\"bogus\":1}}", 1,
     ["VAE", "bogus", "--model-kwargs"]),
    ("model-kwargs-negative", W + "" + M + " --model-kwargs {{\"hidden\":-1}}", 1,
     ["VAE", "--model-kwargs"]),
    ("model-kwargs-without-model", W + " --model-kwargs {{\"hidden\":6}}", 1, ["--model-kwargs", "without --model"]),
    ("model-collapse-raises", "collapse {w}/sd.pt --data {k}/x.npy --model {b}/raises.py:VAE", 1, ["raises.py"]),
    # variance names and values
    ("decoder-var-unknown", W + " --decoder-var nosuch", 1, ["--decoder-var nosuch", "log_sigma2"]),
    ("decoder-var-layer-key", W + " --decoder-var fc_mu.weight", 1, ["fc_mu.weight"]),
    ("decoder-var-wrong-net", W + " --decoder-var fc_mu", 1, ["sd.pt", "encoder outputs 8 values"]),
    ("decoder-var-param-bad", W + " --decoder-var log_sigma2 --decoder-var-param sqrt", 2,
     ["--decoder-var-param", "'sqrt'"]),
    ("encoder-var-unknown", W + " --encoder-var nosuch", 1, ["--encoder-var nosuch"]),
    ("decoder-variance-zero", WP + " --decoder-variance 0", 1, ["--decoder-variance", "got 0"]),
    ("decoder-variance-nan", WP + " --decoder-variance nan", 1, ["--decoder-variance", "nan"]),
    ("decoder-variance-inf", WP + " --decoder-variance inf", 1, ["--decoder-variance", "inf"]),
    ("activation-unknown", W + " --activation swish", 2, ["--activation", "'swish'"]),
    # collapse, compare, select, inspect options
    ("collapse-threshold-and-delta", C + " --threshold 1 --delta 0.4", 1, ["--threshold", "--delta"]),
    ("collapse-lucas-delta", C + " --lucas-delta 2", 1, ["--lucas-delta"]),
    ("collapse-threshold-nan", C + " --threshold nan", 1, ["--threshold"]),
    ("collapse-plot-no-folder", C + " --plot {b}/nodir/c.png", 1, ["nodir"]),
    ("compare-sizes-zero", P + " --sizes 0", 1, ["--sizes", "0"]),
    ("compare-sizes-too-big", P + " --sizes 1000", 1, ["--sizes", "1000", "50"]),
    ("compare-sizes-words", P + " --sizes ten", 1, ["--sizes", "'ten'"]),
    ("compare-repeats-zero", P + " --repeats 0", 1, ["--repeats"]),
    ("compare-mc-zero", P + " --mc-samples 0", 1, ["--mc-samples"]),
    ("compare-plot-no-folder", P + " --plot {b}/nodir/c.png", 1, ["nodir"]),
    ("select-latents-zero", S.replace("--latents 1", "--latents 0"), 1, ["--latents", "'0'"]),
    ("select-latents-above-D", S.replace("--latents 1", "--latents 9"), 1, ["--latents", "9", "4"]),
    ("select-phases-sum", S + " --phases 10,10", 1, ["--phases", "20", "50"]),
    ("select-true-dims-count", S + " --phases 25,25 --true-dims 1", 1, ["--true-dims"]),
    ("select-stream-thirds", S + " --phases stream", 1, ["--phases stream", "50 rows"]),
    ("select-batch-zero", S.replace("--batch-size 10", "--batch-size 0"), 1, ["--batch-size"]),
    ("select-window-zero", S + " --window 0", 1, ["--window"]),
    ("select-tail-zero", S + " --tail 0", 1, ["--tail"]),
    ("select-samples-zero", S.replace("--samples 1", "--samples 0"), 1, ["--samples"]),
    ("select-lr-negative", S + " --lr -1", 1, ["--lr"]),
    ("select-plot-no-folder", S + " --plot {b}/nodir/s.png", 1, ["nodir"]),
    ("inspect-missing", "inspect {b}/nothere.pt", 1, ["nothere.pt", "no such"]),
    # plot
    ("plot-missing-run", "plot {b}/norun --out {b}/p.png", 1, ["norun", "no training run"]),
    ("plot-empty-log", "plot {b}/run_emptylog --out {b}/p.png", 1, ["run_emptylog", "no epochs"]),
    ("plot-junk-log", "plot {b}/run_junklog --out {b}/p.png", 1, ["run_junklog", "no epochs"]),
    ("plot-out-no-folder", "plot {r} --out {b}/nodir/p.png", 1, ["nodir"]),
    ("plot-out-format", "plot {r} --out {b}/p.xyz", 1, ["p.xyz"]),
    # train: presets, scaling, holdout, output
    ("train-preset-unknown", T + " --preset fig9", 1, ["--preset", "'fig9'"]),
    ("train-preset-needs-data", "train vae1 --preset fig1b --out {b}/t_pre", 1, ["--preset fig1b", "--data"]),
    ("train-scale-unknown", T + " --scale log", 2, ["--scale", "'log'"]),
    ("train-holdout-one", T + " --holdout 1", 1, ["holdout", "1"]),
    ("train-holdout-negative", T + " --holdout -0.5", 1, ["holdout", "-0.5"]),
    ("train-holdout-nan", T + " --holdout nan", 1, ["holdout", "nan"]),
    ("train-drop-column-out", T + " --drop-column 9", 1, ["x.npy", "drop column 9 of 4"]),
    ("train-key-on-npy", T + " --key a", 1, ["x.npy", "--key"]),
    ("train-out-pt", T.replace("{b}/t_out", "{b}/t_out.pt"), 1, ["t_out.pt", ".safetensors"]),
    ("train-out-existing-run", T.replace("{b}/t_out", "{r}"), 1, ["already holds a run", "--resume"]),
    ("train-out-and-resume", T + " --resume {r}", 1, ["--resume", "--out"]),
    ("train-out-under-file", T.replace("{b}/t_out", "{b}/afile/run"), 1, ["afile"]),
    # resume of a missing or damaged run
    ("resume-missing", "train linear --resume {b}/norun", 1, ["norun", "no run to resume"]),
    ("resume-plain-folder", "train linear --resume {b}/adir", 1, ["adir", "no run to resume"]),
    ("resume-no-run-json", "train linear --resume {b}/run_nojson", 1, ["run_nojson", "run.json"]),
    ("resume-empty-run-json", "train linear --resume {b}/run_emptyjson", 1, ["run_emptyjson/run.json", "empty",
                                                                             "remove"]),
    ("out-empty-run-json", T.replace("{b}/t_out", "{b}/run_emptyjson"), 1, ["run_emptyjson/run.json", "empty"]),
    ("resume-torn-run-json", "train linear --resume {b}/run_badjson", 1, ["run_badjson/run.json", "unreadable"]),
    ("resume-run-json-list", "train linear --resume {b}/run_listjson", 1, ["run_listjson/run.json"]),
    ("resume-no-model-config", "train linear --resume {b}/run_noconfig", 1, ["run_noconfig", "model_config"]),
    ("resume-bad-model-config", "train linear --resume {b}/run_badconfig", 1, ["run_badconfig", "model_config"]),
    ("resume-no-settings", "train linear --resume {b}/run_nosettings", 1, ["run_nosettings", "settings"]),
    ("resume-no-data-setting", "train linear --resume {b}/run_nodata", 1, ["run_nodata", "data"]),
    ("resume-truncated-state", "train linear --resume {b}/run_halfstate", 1, ["run_halfstate/state.safetensors"]),
    ("resume-state-is-model", "train linear --resume {b}/run_modelstate", 1,
     ["run_modelstate/state.safetensors", "not an entropy-elbo run state"]),
    ("resume-config-vs-data", "train linear --resume {b}/run_bigconfig", 1, ["run_bigconfig", "7"]),
    # resume with changed settings
    ("resume-other-model", R.replace("train linear", "train vae1"), 1, ["trains linear, not vae1"]),
    ("resume-lr", R + " --lr 0.5", 1, ["--lr 0.5 differs"]),
    ("resume-seed", R + " --seed 9", 1, ["--seed 9 differs"]),
    ("resume-holdout", R + " --holdout 0.5", 1, ["--holdout 0.5 differs"]),
    ("resume-scale", R + " --scale minmax", 1, ["--scale minmax differs"]),
    ("resume-batch-size", R + " --batch-size 7", 1, ["--batch-size 7 differs"]),
    ("resume-latents", R + " --latents 3", 1, ["--latents 3 differs"]),
    ("resume-data", R.replace("{k}/x.npy", "ppca"), 1, ["--data ppca differs"]),
    ("resume-preset", R + " --preset fig1a", 1, ["--preset"]),
    ("resume-fewer-epochs", R + " --epochs 1", 1, ["--epochs 1", "2"]),
]


@pytest.mark.parametrize(("args", "code", "names"), [c[1:] for c in WILD_CASES], ids=[c[0] for c in WILD_CASES])
def test_wild_bad_input_gives_one_line_error(kit: Path, wild: Path, wbad: Path, run_dir: Path, args: str, code: int,
                                             names: list[str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    try:
        assert_user_error(invoke(args.format(k=kit, w=wild, b=wbad, r=run_dir).split()), code, *names)
        assert {p: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before, "a refused command touched the run"
        assert not list(wbad.glob("t_*")), "a refused training run left an output"
    finally:
        for left in wbad.glob("t_*"):  # one case's leftover must not fail the next
            shutil.rmtree(left) if left.is_dir() else left.unlink()
    assert not list(wbad.rglob(".*.tmp")), "a temporary file was left behind"


def test_wild_cases_are_distinct() -> None:
    assert len({c[0] for c in WILD_CASES}) == len({c[1] for c in WILD_CASES}) == len(WILD_CASES)


def test_no_wild_pickle_ran(kit: Path, wild: Path, wbad: Path) -> None:
    """Every loader path handed a pickle that would create a RAN_* file; none appeared."""
    hostile = ["evil.pt", "evil.ckpt", "evil.pth", "evil_p4.pt", "evil_script.pt", "py_evilmodel", "py_encoderpkl",
               "py_decoderpkl"]
    for name in hostile:
        for command in ("estimate", "collapse", "compare"):
            invoke([command, wbad / name, "--data", kit / "x.npy"])
        invoke(["inspect", wbad / name])
    for command in ("collapse", "compare", "inspect"):
        invoke([command, wild / "sd.pt", "--data", wbad / "evil.npz"])
    assert not list(wbad.glob("RAN_*")), "a hostile pickle ran code"


PROCESS_SCRIPT = """
import json, sys
from click.testing import CliRunner
from entropy_elbo.cli import main
results = [CliRunner().invoke(main, args) for args in json.loads(sys.argv[1])]
print(json.dumps([[r.exit_code, r.stdout, r.stderr] for r in results]))
"""


def test_loader_cases_in_a_plain_process_print_one_line(kit: Path, wild: Path, wbad: Path, run_dir: Path) -> None:
    """The loader cases again in a fresh interpreter with Python's default warning filters (pytest captures
    warnings, a user's terminal does not): still exactly one line on stderr, nothing on stdout."""
    import os
    import subprocess
    import sys

    cases = [c for c in WILD_CASES if c[1].startswith(("estimate", "inspect")) and c[2] == 1]
    args = [c[1].format(k=kit, w=wild, b=wbad, r=run_dir).split() for c in cases]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", PROCESS_SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    for case, (code, stdout, stderr) in zip(cases, json.loads(done.stdout), strict=True):
        assert code == 1 and stdout == "", (case[0], code, stdout)
        assert stderr.count("\n") == 1 and stderr.startswith("Error: "), (case[0], stderr)
    assert len(cases) >= 40
