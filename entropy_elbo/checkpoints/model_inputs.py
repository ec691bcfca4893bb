"""What a model's own code takes as input, checked before it runs (issue #22).

Two mismatches between the data's rows and the model would otherwise end in the model's own error, blaming it:
- flat rows (B, D) for a model whose first layer is a Conv2d: the rows are reshaped to images when the layer's
  in_channels C and D fix the shape (C*H*W = D with H = W, or a shape the model records as `input_shape` /
  `image_shape`), said in a note; otherwise a one-line error naming the row shape and the image shape to pass;
- a conditional VAE (q(z|x, c), p(x|z, c)): its encode/decode/forward need a second input (a label or condition),
  or its first layer is D + k wide (x concatenated with a k-wide condition). Refused as conditional, by name.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from entropy_elbo.errors import CheckpointError

CONDITION_WORDS = ("y", "c", "cond", "condition", "conditions", "label", "labels", "class", "classes", "class_",
                   "context", "attr", "attrs", "attributes", "target", "targets", "onehot", "one_hot")
NOT_COVERED = ("conditional VAEs (q(z|x,c), p(x|z,c)) are not covered: the entropy ELBO reads an unconditional "
               "Gaussian VAE; to measure it at one fixed condition, wrap the model in a class whose encode(x) and "
               "decode(z) pass that condition, and give it with --model FILE.py:NAME")
RECORDED = ("input_shape", "image_shape", "img_shape", "in_shape")
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _required(fn: Callable) -> list[str] | None:
    """The names of fn's required positional parameters (self excluded on a bound method); None: unreadable."""
    try:
        params = inspect.signature(fn).parameters.values()
    except Exception:  # noqa: BLE001 -- builtins, compiled or wrapped methods: no signature to read
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]


def _called(module: nn.Module) -> list[tuple[str, Callable]]:
    """The methods the tool calls with one input each: encode (or encoder), decode (or decoder), forward."""
    name = type(module).__name__
    found: list[tuple[str, Callable]] = []
    for method, child in (("encode", "encoder"), ("decode", "decoder")):
        if callable(getattr(module, method, None)):
            found.append((f"{name}.{method}", getattr(module, method)))
        elif isinstance(getattr(module, child, None), nn.Module):
            found.append((f"{name}.{child}", getattr(module, child).forward))
    if type(module).forward is not nn.Module.forward:
        found.append((f"{name}.forward", module.forward))
    return found


def refuse_conditional_calls(module: nn.Module) -> None:
    """A conditional VAE by its signatures: encode/decode/forward needing a second input; one line naming it."""
    if isinstance(module, (nn.Sequential, nn.ModuleList, torch.jit.ScriptModule)):  # scripted: no signatures
        return
    for where, fn in _called(module):
        names = _required(fn)
        if not names or len(names) < 2:
            continue
        extra = names[1:]
        if any(n.lower() in CONDITION_WORDS for n in extra):
            raise CheckpointError(f"conditional VAE: {where}({', '.join(names)}) needs a condition ({', '.join(extra)})"
                                  f" beside {names[0]}, and the tool calls it with the data (or latents) alone; "
                                  f"{NOT_COVERED}")
        raise CheckpointError(f"{where}({', '.join(names)}) needs {len(extra)} more input(s) ({', '.join(extra)}) "
                              f"beside {names[0]}, and the tool calls it with the data (or latents) alone; if they are "
                              f"a condition or label, it is a conditional VAE: {NOT_COVERED}; else give those inputs "
                              "defaults, or wrap the model with --model FILE.py:NAME")


def first_layer(module: nn.Module) -> tuple[str, nn.Module] | None:
    """The encoder's first Linear or Conv layer in registration order (inside `encoder` where there is one)."""
    encoder = getattr(module, "encoder", None)
    root, prefix = (encoder, "encoder.") if isinstance(encoder, nn.Module) else (module, "")
    for name, sub in root.named_modules():
        if isinstance(sub, LAYERS):
            return f"{prefix}{name}".rstrip("."), sub
    return None


def refuse_conditional_width(name: str, layer: nn.Module, d: int) -> None:
    """A first Linear layer D + k wide for rows of D values: x concatenated with a k-wide condition."""
    if not isinstance(layer, nn.Linear) or layer.in_features <= d:
        return
    k = layer.in_features - d
    raise CheckpointError(f"conditional VAE: the model's first layer {name} takes {layer.in_features} inputs per row "
                          f"but the data rows have {d}: {k} more, as an encoder that concatenates a {k}-wide condition "
                          f"(a one-hot label) to x; {NOT_COVERED} (if the model is not conditional, pass rows of "
                          f"{layer.in_features} values)")


def refuse_channels(name: str, conv: nn.Conv2d, channels: int) -> None:
    """Images of C channels for a first Conv2d taking another number: one line, before the model's own error."""
    if conv.in_channels == channels:
        return
    k = conv.in_channels - channels
    why = (f" (if it is a conditional VAE that stacks a {k}-channel condition on x: {NOT_COVERED})" if k > 0 else "")
    raise CheckpointError(f"data: images of {channels} channel(s), but the model's first layer {name} is a Conv2d "
                          f"taking {conv.in_channels}; pass images of {conv.in_channels} channel(s){why}")


def refuse_conditional_mlp(d_in: int, d_out: int, h: int, dec_in: int) -> None:
    """A state_dict whose encoder takes D + k and whose decoder takes H + k: both concatenate a k-wide condition."""
    k = d_in - d_out
    if k > 0 and dec_in - h == k:
        raise CheckpointError(f"conditional VAE: the encoder's first layer takes {d_in} = {d_out} + {k} inputs and "
                              f"the decoder's first layer {dec_in} = {h} + {k} (the decoder outputs {d_out} values, "
                              f"the latents are {h}): both concatenate a {k}-wide condition; {NOT_COVERED}")


def recorded_shape(module: nn.Module, channels: int, d: int) -> tuple[tuple[int, ...], str] | None:
    """An image shape (C, H, W) the model records as an attribute, when it fits the layer and D."""
    for attr in RECORDED:
        value = getattr(module, attr, None)
        if isinstance(value, (tuple, list)) and len(value) == 3 and all(isinstance(v, int) for v in value) \
                and value[0] == channels and math.prod(value) == d:
            return tuple(value), f"the model's own {attr}"
    return None


def image_shape(module: nn.Module, name: str, conv: nn.Conv2d, d: int) -> tuple[tuple[int, ...], str]:
    """The (C, H, W) that flat rows of D values have for a model whose first layer `conv` takes C channels."""
    found = recorded_shape(module, int(conv.in_channels), d)
    return found if found is not None else square_image(int(conv.in_channels), d, f"the model's first layer {name}")


def square_image(c: int, d: int, taker: str) -> tuple[tuple[int, ...], str]:
    """(C, H, H) with C*H*H = D, and why; else a one-line error naming the row shape and the image shape to pass."""
    side = math.isqrt(d // c) if d % c == 0 else 0
    if side and c * side * side == d:
        return (c, side, side), f"C*H*W = D with H = W: {c} x {side} x {side} = {d}"
    why = f"{d} is not a multiple of {c}" if d % c else f"{d} / {c} = {d // c} is not a square"
    raise CheckpointError(f"data: rows are flat, shape (N, {d}), but {taker} is a Conv2d taking images of {c} "
                          f"channel(s), (N, {c}, H, W) with {c}*H*W = {d}, and {why}, so H and W cannot be told; pass "
                          f"the rows as images, an array of shape (N, {c}, H, W) (np.save('x.npy', x.reshape(-1, {c}, "
                          f"H, W))), or record the shape as the model's input_shape = ({c}, H, W)")


def reshaped_note(d: int, taker: str, shape: tuple[int, ...], why: str) -> str:
    return (f"data rows are flat ({d} values) and {taker} is a Conv2d with {shape[0]} input channel(s): rows "
            f"reshaped to images {'x'.join(map(str, shape))} ({why})")


def as_model_input(module: nn.Module, probe: Tensor) -> tuple[Tensor, tuple[int, ...] | None, str | None]:
    """(the probe the model takes, the image shape flat rows are reshaped to, the note saying so): conditional
    VAEs refused first, then flat rows for a Conv2d reshaped where the layer and D fix the shape."""
    refuse_conditional_calls(module)
    found = first_layer(module)
    if found is not None and probe.dim() == 4 and isinstance(found[1], nn.Conv2d):
        refuse_channels(found[0], found[1], int(probe.shape[1]))
    if found is None or probe.dim() != 2:
        return probe, None, None
    name, layer = found
    d = int(probe.shape[1])
    refuse_conditional_width(name, layer, d)
    if not isinstance(layer, nn.Conv2d):
        return probe, None, None
    shape, why = image_shape(module, name, layer, d)
    note = reshaped_note(d, f"the model's first layer {name}", shape, why)
    return probe.reshape(len(probe), *shape), shape, note
