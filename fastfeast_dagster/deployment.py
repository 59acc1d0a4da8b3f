"""Which deployment a process belongs to: `embedded` (one machine, the default) or `distributed`.

`FASTFEAST_DEPLOYMENT=distributed` is for processes that share nothing but the databases and the
data root (a code server, a daemon, run workers on other machines): nothing falls back to the
embedded server, to a key file in a state dir or to a data root relative to the installed code,
and what is missing fails with one line naming the variable.
"""

from __future__ import annotations

import os

DEPLOYMENT_ENV = "FASTFEAST_DEPLOYMENT"
MODES = ("embedded", "distributed")


class DeploymentError(RuntimeError):
    """The environment lacks what this deployment needs; the message is one line."""


def distributed() -> bool:
    mode = os.environ.get(DEPLOYMENT_ENV) or "embedded"
    if mode not in MODES:
        raise DeploymentError(f"{DEPLOYMENT_ENV}={mode!r}: use one of {', '.join(MODES)}")
    return mode == "distributed"


def refuse_fallback(variable: str, fallback: str) -> None:
    """Raise if a distributed process is about to fall back to `fallback` for lack of `variable`."""
    if distributed():
        raise DeploymentError(
            f"{variable} is not set; with {DEPLOYMENT_ENV}=distributed it is required "
            f"(nothing falls back to {fallback})"
        )
