"""Real data sets that ship inside scikit-learn (no download): `--data digits`, `breast_cancer`, ...

scikit-learn is an optional extra (`pip install 'entropy-elbo[datasets]'`). Every set comes back float32 and
unscaled, except the digits, whose 17 grey levels (0-16) become pixels / 16 in [0, 1], as (N, 1, 8, 8)
images: the MLP models read them flat (D = 64), the conv VAE as images. Scale the tables with `--scale`
(fitted on the training split only); breast_cancer's 30 features span 0.001 to 4,254.
"""

from __future__ import annotations

import numpy as np

from entropy_elbo.errors import DataError

# name -> (scikit-learn loader, what the rows are)
BUNDLED: dict[str, tuple[str, str]] = {
    "digits": ("load_digits", "1,797 handwritten 8x8 digits, pixels / 16 in [0, 1]"),
    "breast_cancer": ("load_breast_cancer", "569 tumours x 30 features, unscaled"),
    "iris": ("load_iris", "150 flowers x 4 features, unscaled"),
    "wine": ("load_wine", "178 wines x 13 features, unscaled"),
    "diabetes": ("load_diabetes", "442 patients x 10 features, centred and scaled by scikit-learn"),
}


def load_bundled(name: str) -> np.ndarray:
    """One of scikit-learn's bundled data sets as float32 (N, D), or (N, 1, 8, 8) for the digits."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled data set {name!r}; choose one of {', '.join(BUNDLED)}")
    try:
        from sklearn import datasets
    except ImportError as e:
        raise DataError(f"{name}: scikit-learn's bundled data sets need scikit-learn; "
                        "pip install 'entropy-elbo[datasets]'") from e
    x = getattr(datasets, BUNDLED[name][0])().data  # (N, D) float64
    if name == "digits":
        return (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # (N, 1, 8, 8)
    return x.astype(np.float32)
