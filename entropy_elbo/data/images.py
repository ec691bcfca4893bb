"""Folders of images (CelebA, App. D.4) as float32 stacks (N, 3, S, S) in [0, 1]."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from entropy_elbo.errors import DataError
from entropy_elbo.limits import (
    check_memory,
    memory_budget,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _image_to_array(path: Path, image_size: int, image_module: ModuleType, crop: int | None = None) -> np.ndarray:
    """One image as float32 (3, S, S) in [0, 1]: RGB; the centre crop x crop square resized to S (CelebA: 148, as
    the paper's code), or with no crop the shorter side resized to S and the centre S x S kept."""
    bound = image_module.MAX_IMAGE_PIXELS  # PIL's own bomb limit becomes ours, said in one line with the size
    try:
        image_module.MAX_IMAGE_PIXELS = None
        img = image_module.open(path)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable image ({e}); remove or replace it") from e
    finally:
        image_module.MAX_IMAGE_PIXELS = bound
    with img:
        w, h = img.size  # from the header: nothing is decoded yet
        if crop is not None and min(w, h) < crop:
            raise DataError(f"{path}: the image is {w}x{h} pixels, smaller than the centre crop of {crop}; "
                            "pass a smaller --crop or remove the image")
        factor = image_size / min(w, h)
        size = ((image_size, image_size) if crop is not None else
                (max(image_size, round(w * factor)), max(image_size, round(h * factor))))
        limit = min(bound or w * h, memory_budget() // 16)  # RGB(A) decoded, then resized
        for what, (a, b) in (("image", (w, h)), ("resized image", size)):
            if a * b > limit:
                raise DataError(f"{path}: a {a}x{b} {what} ({a * b:,} pixels) is more than the {limit:,} pixels "
                                "this command decodes at once; shrink or crop the image first")
        try:
            img = img.convert("RGB")
            if crop is not None:
                left, top = round((w - crop) / 2), round((h - crop) / 2)
                img = img.crop((left, top, left + crop, top + crop)).resize(size, image_module.Resampling.BICUBIC)
            else:
                img = img.resize(size, image_module.Resampling.BICUBIC)
                left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
                img = img.crop((left, top, left + image_size, top + image_size))
            pixels = np.asarray(img, dtype=np.float32) / 255.0  # (S, S, 3)
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{path}: unreadable image ({e}); remove or replace it") from e
    return np.clip(pixels, 0.0, 1.0).transpose(2, 0, 1)


def load_image_folder(path: str | Path, image_size: int = 64, crop: int | None = None) -> np.ndarray:
    """All png/jpg/jpeg/bmp images of a folder as float32 (N, 3, S, S) in [0, 1] (CelebA, App. D.4), each
    centre-cropped to crop x crop pixels first when crop is given."""
    path = Path(path)
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(f"{path}: reading images needs Pillow; pip install 'entropy-elbo[images]'") from e
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; pass a folder of png/jpg/jpeg/bmp images")
    if image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
    if crop is not None and crop < 1:
        raise DataError(f"--crop must be a positive number of pixels, got {crop}")
    files = image_files(path)
    if not files:
        raise DataError(f"{path}: no .png/.jpg/.jpeg/.bmp images in this folder")
    check_memory(4 * 3 * image_size**2 * (len(files) + 4), f"--image-size {image_size}: {len(files)} images of "
                 f"3x{image_size}x{image_size} float32", "pass a smaller --image-size", DataError)
    out = np.empty((len(files), 3, image_size, image_size), dtype=np.float32)  # (N, 3, S, S)
    for i, f in enumerate(files):
        out[i] = _image_to_array(f, image_size, Image, crop)
    return out


def image_files(folder: Path) -> list[Path]:
    """The images of a folder that `load_image_folder` reads, sorted by name (other files are not data)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
