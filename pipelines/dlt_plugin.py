"""dlt run-context plugin: run from this repository, dlt's own CLI finds our pipelines.

Without it, `dlt pipeline products info` run from the repo root looks in dlt's global folder
(`/var/dlt` as root) and finds nothing, because the project keeps its dlt state in the data
folder. dlt discovers this module through the `dlt` entry point in pyproject.toml (its pluggy
`plug_run_context` hook) and, for the project directory only, points the data and local dirs
where `configure_runtime()` points them; exported `DLT_*` variables still win, as in dlt.
Where the project is not installed (a production worker), `configure_runtime()` sets the same
folders through the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlt.common.configuration import plugins
from dlt.common.configuration.specs.pluggable_run_context import RunContextBase
from dlt.common.runtime.run_context import RunContext

from pipelines.environment import PROJECT_DIR, dlt_dirs


class ProjectRunContext(RunContext):
    """dlt's default context, with this project's data and local folders."""

    @property
    def data_dir(self) -> str:
        return os.environ.get("DLT_DATA_DIR") or dlt_dirs()["DLT_DATA_DIR"]

    @property
    def local_dir(self) -> str:
        return os.environ.get("DLT_LOCAL_DIR") or dlt_dirs()["DLT_LOCAL_DIR"]


@plugins.hookimpl(specname="plug_run_context")
def plug_run_context_impl(
    run_dir: str | None, runtime_kwargs: dict[str, Any] | None
) -> RunContextBase | None:
    chosen = run_dir or os.environ.get("DLT_PROJECT_DIR") or "."
    if Path(chosen).resolve() != PROJECT_DIR:
        return None  # another project: dlt's own contexts decide
    return ProjectRunContext(str(PROJECT_DIR))
