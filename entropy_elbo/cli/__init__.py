"""The command line: a thin layer over the library. The only package that imports click."""

from entropy_elbo.cli import measure, training  # noqa: F401  (each module adds its commands to `main`)
from entropy_elbo.cli.base import Group, main, one_line

__all__ = ["Group", "main", "one_line"]
