"""Deterministic synthetic FastFeast input files with a manifest of what a pipeline must do."""

from fastfeast_dagster.synthetic.generator import generate
from fastfeast_dagster.synthetic.manifest import Manifest

__all__ = ["Manifest", "generate"]
