"""Start or resume a training run the same way from the CLI and from Python: settings, checks, data, model.

Settings merge as built-in defaults < the model's defaults < the preset < the settings given; a resumed run
keeps the settings stored in its `run.json` (only `epochs` may grow) and its model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from entropy_elbo import distributed, report
from entropy_elbo.atomic import check_writable
from entropy_elbo.data import iter_batches
from entropy_elbo.devices import resolve_device
from entropy_elbo.entropies import LOG_VAR_LIMIT
from entropy_elbo.errors import EntropyElboError
from entropy_elbo.models import MODELS, ModelConfig, build_model, check_model_size, check_step_size, model_config
from entropy_elbo.presets import preset
from entropy_elbo.runs import (
    RunFolder,
    data_changes,
    fingerprint,
    read_settings,
    run_for_out,
    run_for_resume,
    state_epoch,
    write_settings,
)
from entropy_elbo.threads import model_work, use_threads
from entropy_elbo.train import MODEL_DEFAULTS, TrainConfig, prepare_data, train

RUN_KEYS = ("data", "key", "drop_column", "scale", "holdout", "image_size", "latents", "init_log_sigma2", "seed",
            "epochs", "batch_size", "lr", "samples")
SETTINGS = (*RUN_KEYS, "crop", "rows", "hidden", "activation", "preset", "decay_fraction",
            "variance_lr_factor")  # what `train_run` takes as settings
RESUMABLE = ("epochs",)  # the only settings a resumed run may change (to extend it)


@dataclass(frozen=True)
class RunResult:
    """A finished run: where it lives, its merged settings, and one log row per epoch (nats per data point)."""

    run: RunFolder
    settings: dict[str, object]
    history: list[dict[str, object]]
    main_process: bool = True  # False in the processes other than 0 under torchrun (they neither write nor report)


def train_run(model: str | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
              device: str | torch.device = "auto", progress: bool | None = None, threads: int | None = None,
              **settings: object) -> RunResult:
    """Train MODEL into the run folder `out`, or carry on the run at `resume` (MODEL optional: it is stored).

    `settings` are the `train` command's options by their Python names (data, latents, epochs, lr, preset, ...);
    `progress` None shows a progress bar when stderr is a terminal; `threads` None lets
    `entropy_elbo.threads.choose_threads` pick torch's CPU threads from the work's size. Under torchrun every
    process trains on its own block of rows and process 0 alone writes.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise EntropyElboError(f"train_run: unknown setting {unknown[0]!r}; use {', '.join(SETTINGS)}")
    given = {k: v for k, v in settings.items() if v is not None}
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    ranks = distributed.context_from_env()  # under torchrun: DDP over blocks of rows, rank 0 alone writes
    if ranks is not None and ranks.world_size > 1:
        if resume is not None:
            raise EntropyElboError("--resume under torchrun is not supported; resume the run in one process")
        dev = distributed.setup(ranks, dev)
    else:
        ranks = None
    releases: list = []  # the run folder's lock, released when the run ends (the kernel does if it dies)
    try:
        return _train_run(model, out, resume, dev, ranks, given, progress, threads, releases)
    finally:
        for release in releases:
            release()
        if ranks is not None:
            distributed.teardown()


def _train_run(model: str | None, out: str | Path | None, resume: str | Path | None, dev: torch.device,
               ranks: distributed.Context | None, given: dict[str, object], progress: bool | None,
               threads: int | None, releases: list) -> RunResult:
    main_rank = ranks is None or ranks.is_main
    stored: dict[str, object] | None = None
    if resume is not None:
        if out is not None:
            raise EntropyElboError("--resume continues a run where it was written; drop --out")
        run = run_for_resume(resume)
        releases.append(run.claim())  # one process at a time carries a run on
        stored = check_stored(read_settings(run.folder), run.settings)
        model, settings = resumed_settings(stored, model, given, Path(resume))
        check_resume_epochs(run, int(settings["epochs"]), Path(resume))
        check_same_data(stored, str(settings["data"]), Path(resume))
    else:
        if out is None:
            raise EntropyElboError("train: pass --out RUN_FOLDER or --out CHECKPOINT.safetensors")
        model = model_for(model, given.get("preset"))
        run = run_for_out(out)
        if run.settings.exists():
            read_settings(run.folder)  # an empty run.json (a run stopped before it started) says so
            raise EntropyElboError(f"--out {out}: {run.folder} already holds a run; --resume {out} continues it, "
                                   "or remove it or choose another --out")
        run.check_fresh(Path(out))
        check_writable(run.checkpoint if run.checkpoint.parent.is_dir() else run.folder)
        settings = new_settings(model, given)
    prepared = prepare_data(str(settings["data"]), key=settings["key"], drop_column=settings["drop_column"],
                            scale=str(settings["scale"]), holdout=float(settings["holdout"]),
                            image_size=int(settings["image_size"]), crop=settings.get("crop"),
                            rows=settings.get("rows"), seed=int(settings["seed"]))
    x, held = prepared.train, prepared.heldout
    if model != "conv":  # the MLP models read flat rows
        x = x.reshape(len(x), -1)
        held = None if held is None else held.reshape(len(held), -1)
    x = training_data(x, str(settings["data"]), int(settings["latents"]), float(settings["init_log_sigma2"]))
    if stored is not None:
        config = ModelConfig.from_json(str(stored["model_config"]))
        if config.data_dim != int(np.prod(x.shape[1:])):
            raise EntropyElboError(f"--resume {resume}: the data has {int(np.prod(x.shape[1:]))} values per row but "
                                   f"the run's model expects {config.data_dim}; pass the run's --data")
        was = stored["data"].get("shape") if isinstance(stored.get("data"), dict) else None
        if was is not None and list(was) != list(x.shape):
            raise EntropyElboError(f"--resume {resume}: the data {settings['data']} now gives training rows of shape "
                                   f"{tuple(x.shape)}, the run started on {tuple(was)}; the data changed, start a new "
                                   "run")
    else:
        config = model_config(model, tuple(x.shape[1:]), int(settings["latents"]), **model_settings(model, settings))
    check_model_size(config, copies=4, source=f"train {model}")
    training = TrainConfig.from_settings(settings)
    check_step_size(config, training.samples, min(training.batch_size, len(x)),
                    source=f"train {model} --samples {training.samples} --batch-size {training.batch_size}")
    meta = {"source": prepared.source, "shape": list(x.shape), "scale": prepared.scale,
            "heldout_rows": 0 if held is None else len(held), "fingerprint": fingerprint(str(settings["data"]))}
    if Path(str(settings["data"])).is_dir():  # how estimate/collapse/compare must read the folder again
        meta["images"] = {"image_size": int(settings["image_size"]), "crop": settings.get("crop")}
    if prepared.preprocessing is not None:  # the column drop and fitted scaler, to read the raw file again
        meta["preprocessing"] = prepared.preprocessing
    if ranks is not None:
        per_rank = distributed.rows_per_rank(len(x), ranks)
        meta.update(processes=ranks.world_size, rows_per_process=per_rank)
        if main_rank:
            left = len(x) - per_rank * ranks.world_size
            report.message(f"torchrun: {ranks.world_size} processes, {per_rank} training rows and batches of "
                           f"{training.batch_size} rows each (gradients averaged over processes)"
                           + (f"; the last {left} of {len(x)} rows left out, so that all take the same steps"
                              if left else ""))
    distributed.barrier(ranks)  # every rank has checked --out before rank 0 writes there
    made = not run.folder.exists()
    if stored is None and main_rank:
        releases.append(run.create().claim())
    try:
        if stored is None and main_rank:
            write_settings(run, {"settings": {k: list(v) if isinstance(v, tuple) else v
                                              for k, v in settings.items()},
                                 "model_config": config.to_json(), "data": meta})
        torch.manual_seed(training.seed)
        net = build_model(config)
        if dev.type == "cpu":
            use_threads(model_work(net, training.batch_size, training.samples), threads)
        trainer = train if ranks is None else distributed.sharded_trainer(ranks)
        history = trainer(net, x, training, device=dev, heldout=held, run=run, resume=stored is not None,
                          metadata=meta, progress=progress if main_rank else False)
    except Exception:
        if stored is None and main_rank:
            remove_unstarted(run, made)
        raise
    return RunResult(run, settings, history, main_rank)


def remove_unstarted(run: RunFolder, made: bool) -> None:
    """A new run that failed before its first epoch was saved leaves nothing behind: its files, and its folder
    when this run made it, are removed (a run with a saved epoch stays, for --resume)."""
    if run.state.exists() or run.checkpoint.exists():
        return
    for path in (run.settings, run.log):
        path.unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
            run.folder.rmdir()


def model_for(model: str | None, preset_name: object) -> str:
    """The model a new run trains: MODEL, else the preset's; a preset of another model is refused."""
    chosen = preset(str(preset_name)) if preset_name else None
    if model is None:
        if chosen is None:
            raise EntropyElboError(f"train: name the MODEL ({', '.join(sorted(MODELS))}) or a --preset")
        return str(chosen["model"])
    if model not in MODELS:
        raise EntropyElboError(f"train: model {model!r} unknown; use one of {', '.join(sorted(MODELS))}")
    if chosen is not None and chosen["model"] != model:
        raise EntropyElboError(f"--preset {preset_name} trains {chosen['model']}, not {model}; run `train "
                               f"{chosen['model']} --preset {preset_name}` (or drop MODEL)")
    return model


def new_settings(model: str, given: dict[str, object]) -> dict[str, object]:
    """Built-in defaults < the model's defaults < the preset < the settings given."""
    base: dict[str, object] = {"data": None, "key": None, "drop_column": None, "scale": "none", "holdout": 0.0,
                               "image_size": 64, "crop": None, "rows": None, "latents": 2, "hidden": None,
                               "init_log_sigma2": 0.0, "seed": 0,
                               "activation": "leaky_relu" if model == "conv" else "relu"}
    base.update(MODEL_DEFAULTS[model])
    name = given.get("preset")
    if name:
        chosen = preset(str(name))
        base.update({k: v for k, v in chosen.items() if k not in ("model", "note")})
        if chosen.get("note") and "data" not in given and chosen.get("data") is None:
            raise EntropyElboError(f"--preset {name}: {chosen['note']}")
    base.update(given)
    if base["data"] is None:
        raise EntropyElboError("train: pass --data NAME_OR_FILE (a synthetic set, a data file or an image folder)")
    if isinstance(base["hidden"], str):
        base["hidden"] = parse_ints(str(base["hidden"]), "--hidden")
    return base


def resumed_settings(stored: dict[str, object], model: str | None, given: dict[str, object],
                     path: Path) -> tuple[str, dict[str, object]]:
    """The stored run's model and settings; a setting that would change them (other than epochs) is an error."""
    settings = dict(stored.get("settings", {}))  # type: ignore[arg-type]
    kind = ModelConfig.from_json(str(stored["model_config"])).kind
    if model is not None and kind != model:
        raise EntropyElboError(f"--resume {path}: the run trains {kind}, not {model}; run `train {kind} --resume`")
    for key, value in given.items():
        if key == "hidden" and isinstance(value, str):
            value = list(parse_ints(value, "--hidden"))
        if key == "hidden" and isinstance(value, tuple):
            value = list(value)
        if key not in RESUMABLE and settings.get(key) != value:
            raise EntropyElboError(f"--resume {path}: --{key.replace('_', '-')} {value} differs from the run's "
                                   f"{settings.get(key)}; a resumed run keeps its settings (only --epochs may grow)")
    settings.update({k: v for k, v in given.items() if k in RESUMABLE})
    return kind, settings


def check_stored(stored: dict[str, object], path: Path) -> dict[str, object]:
    """A run.json from disk: its settings and model config must be whole before a resume trusts them."""
    settings = stored.get("settings")
    if not isinstance(settings, dict):
        raise EntropyElboError(f"{path}: no 'settings' object; the run folder is damaged, start a new run")
    missing = [k for k in RUN_KEYS if k not in settings]
    if missing:
        raise EntropyElboError(f"{path}: settings lack {', '.join(missing)}; the run folder is damaged, start a new "
                               "run")
    try:
        kind = ModelConfig.from_json(str(stored["model_config"])).kind
    except (KeyError, ValueError, TypeError, EntropyElboError) as err:
        raise EntropyElboError(f"{path}: its model_config is missing or damaged ({err}); start a new run") from None
    if kind not in MODELS:
        raise EntropyElboError(f"{path}: its model_config names the unknown model {kind!r}; start a new run")
    return stored


def check_same_data(stored: dict[str, object], spec: str, path: Path) -> None:
    """A resumed run's data file must be the one it started on (size and the hashes of its ends; mtime: a note)."""
    data = stored.get("data")
    old = data.get("fingerprint") if isinstance(data, dict) else None
    if not isinstance(old, dict):  # a synthetic set, or a run written before fingerprints
        return
    changed, touched = data_changes(old, fingerprint(spec))
    if changed:
        raise EntropyElboError(f"--resume {path}: the data {spec} changed since the run started "
                               f"({', '.join(changed)}); restore it, or start a new run on the new data")
    if touched:
        report.message(f"note: {spec} was modified since the run started, but its size and the hashes of its first and "
                       "last MiB are unchanged; resuming")


def check_resume_epochs(run: RunFolder, epochs: int, path: Path) -> int:
    """The epochs already trained (the run state must be readable); epochs cannot go below them."""
    if not run.state.exists():  # stopped before its first epoch was saved: it starts from scratch
        return 0
    done = state_epoch(run.state)
    if epochs < done:
        raise EntropyElboError(f"--resume {path}: --epochs {epochs} is fewer than the {done} epochs already "
                               f"trained; pass --epochs {done} or more")
    return done


def model_settings(model: str, settings: dict[str, object]) -> dict[str, object]:
    """ModelConfig fields from the merged settings (conv: hidden gives the channels)."""
    out: dict[str, object] = {"activation": settings["activation"],
                              "init_log_sigma2": float(settings["init_log_sigma2"])}
    hidden = settings.get("hidden")
    if model == "conv":
        if hidden:
            out["extra"] = {"channels": list(hidden)}
    elif hidden:
        out["hidden"] = tuple(hidden)
    return out


def training_data(x: np.ndarray, source: str, latents: int, init_log_sigma2: float) -> np.ndarray:
    """The data as float32 in memory, checked finite (row and column named), with 1 <= H <= D and a sane sigma^2."""
    d = int(np.prod(x.shape[1:]))
    if not 1 <= latents <= d:
        raise EntropyElboError(f"--latents {latents}: {source} has D={d} values per row; pass 1 <= --latents <= {d}")
    if not abs(init_log_sigma2) < LOG_VAR_LIMIT:
        raise EntropyElboError(f"--init-log-sigma2 {init_log_sigma2}: exp of it is 0 or infinite in float32; "
                               f"pass a value in (-{LOG_VAR_LIMIT:.1f}, {LOG_VAR_LIMIT:.1f})")
    return np.concatenate(list(iter_batches(x, 65_536, source=source)))


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    """'50,50' -> (50, 50)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EntropyElboError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise EntropyElboError(f"{flag}: {text!r} needs at least one positive size")
    return values

