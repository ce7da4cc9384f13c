"""Secrets are read inside activities, at call time, from the environment variable the
config names: only the variable's name travels through workflow input and history."""

from __future__ import annotations

import os

from temporalio.exceptions import ApplicationError


def secret_from_env(name: str, what: str | None = None) -> str:
    """The value of `name` now; unset (or empty) is a permanent error naming the variable,
    never its value, so the run fails fast instead of retrying."""
    value = os.environ.get(name)
    if not value:
        purpose = f" ({what})" if what else ""
        raise ApplicationError(
            f"environment variable {name}{purpose} is not set",
            type="MissingSecret",
            non_retryable=True,
        )
    return value
