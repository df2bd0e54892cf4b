"""Choose the environment once, at the top (a flow or the CLI), and hand it down.

`load_environment()` reads one variable, `DATA_PIPELINES_ENV` (`local` by default, or
`production`), and returns the `pipelines.environment.Environment` that pipelines and checks
receive as an argument. The local implementation may use the local stack; it is imported only
when chosen, so a production worker never loads it (nor needs its packages).
"""

from __future__ import annotations

import os

from pipelines.environment import ENV_VAR, ConfigurationError, Environment, configure_runtime

ENVIRONMENT_NAMES = ("local", "production")


def environment_name(name: str | None = None) -> str:
    """`name`, else `DATA_PIPELINES_ENV`, else `local`; refused with the fix when unknown."""
    chosen = (name if name is not None else os.environ.get(ENV_VAR, "")).strip().lower()
    chosen = chosen or "local"
    if chosen not in ENVIRONMENT_NAMES:
        raise ConfigurationError(
            f"{ENV_VAR}={chosen!r} is not a known environment: set it to one of "
            f"{', '.join(ENVIRONMENT_NAMES)} (unset means local)."
        )
    return chosen


def load_environment(name: str | None = None) -> Environment:
    """The environment named by `name` or `DATA_PIPELINES_ENV`, with dlt's runtime configured."""
    chosen = environment_name(name)
    configure_runtime()
    if chosen == "production":
        from environments.production import production_environment

        return production_environment()
    from environments.local import local_environment

    return local_environment()
