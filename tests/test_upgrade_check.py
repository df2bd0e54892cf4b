"""`make upgrade-check`'s reading of uv's output and its tables, on recorded uv output.

No network and no uv run: the `uv tree --outdated` lines below were recorded on this project's
lock (2026-12-07); the lock fragments have the shape uv 0.13 writes. The real run
(`make upgrade-check`, ~5 min) is in docs/dependencies.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "upgrade_check.py"

# `uv tree --outdated --frozen --all-groups`, recorded (excerpt).
TREE = """\
data-pipelines v0.1.0
├── boto3 v1.40.61 (latest: v1.44.18)
│   ├── botocore v1.40.70 (latest: v1.44.18)
│   │   ├── jmespath v1.1.0
│   │   ├── python-dateutil v2.9.0.post0 (latest: v4.0.0)
│   │   │   └── six v1.17.0
│   │   └── urllib3 v2.8.0
│   └── s3transfer v0.14.0 (latest: v0.19.3)
│       └── botocore v1.40.70 (*)
├── dlt[filesystem, parquet, s3, snowflake, sql-database] v1.31.0
│   └── sqlalchemy v2.1.9 (extra: sql-database)
├── fastapi v0.150.0 (latest: v0.165.0)
│   ├── pydantic v2.14.3
│   │   ├── pydantic-core v2.50.4
├── prefect v3.9.1
│   ├── httpx[http2] v0.28.1 (latest: v0.29.0)
│   │   ├── anyio v4.16.0 (*)
│   │   └── redis v8.1.0 (extra: redis) (latest: v8.2.0)
│   └── fastapi v0.150.0 (*)
└── ruff v0.17.6 (group: dev)
"""

# `importlib.metadata` of the upgraded venv (what `installed_distributions` returns), excerpt.
INSTALLED = [
    {"name": "data-pipelines", "version": "0.1.0", "requires": ["fastapi>=0.150.0"]},
    {
        "name": "prefect",
        "version": "3.9.1",
        "requires": [
            "fastapi<0.151,>=0.139.0",
            "httpx[http2]!=0.23.2,>=0.23",
            "redis<8.2; extra == 'redis'",
        ],
    },
    {
        "name": "starlette",
        "version": "1.10.0",
        "requires": ["httpx<0.29.0,>=0.27.0; extra == 'full'", "anyio<5,>=3.6.2"],
    },
    {"name": "boto3", "version": "1.40.61", "requires": ["botocore<1.41.0,>=1.40.61"]},
    {"name": "aiobotocore", "version": "2.25.2", "requires": ["boto3<1.40.71,>=1.40.46"]},
    {
        "name": "botocore",
        "version": "1.40.70",
        "requires": [
            "python-dateutil<3.0.0,>=2.1",
            "urllib3!=2.2.0,<3,>=1.25.4; python_version >= '3.10'",
        ],
    },
    {"name": "old-tool", "version": "1.0", "requires": ["s3transfer<0.15; python_version < '3'"]},
]

OLD_LOCK = """\
version = 1
revision = 3
requires-python = ">=3.11, <3.14"

[[package]]
name = "data-pipelines"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "prefect" }, { name = "ruamel-yaml" }]

[[package]]
name = "networkx"
version = "3.6.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "prefect"
version = "3.9.1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "networkx" }, { name = "fastapi" }]

[[package]]
name = "fastapi"
version = "0.150.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "ruamel-yaml"
version = "0.18.17"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "ruamel-yaml-clib", marker = "python_full_version < '3.14'" }]

[[package]]
name = "ruamel-yaml-clib"
version = "0.2.15"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "sqlglot"
version = "30.31.0"
source = { registry = "https://pypi.org/simple" }
"""

NEW_LOCK = """\
version = 1
revision = 3
requires-python = ">=3.11, <3.14"
resolution-markers = [
    "python_full_version >= '3.12'",
    "python_full_version < '3.12'",
]

[[package]]
name = "data-pipelines"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "prefect" }, { name = "ruamel-yaml" }]

[[package]]
name = "networkx"
version = "3.6.1"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version < '3.12'"]

[[package]]
name = "networkx"
version = "3.7"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version >= '3.12'"]

[[package]]
name = "prefect"
version = "3.10.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "networkx", version = "3.6.1", marker = "python_full_version < '3.12'" },
    { name = "networkx", version = "3.7", marker = "python_full_version >= '3.12'" },
    { name = "fastapi" },
    { name = "whenever" },
]

[[package]]
name = "fastapi"
version = "0.150.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "ruamel-yaml"
version = "0.19.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "sqlglot"
version = "31.0.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "whenever"
version = "0.11.0"
source = { registry = "https://pypi.org/simple" }
"""


@pytest.fixture(scope="module")
def upgrade_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("upgrade_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["upgrade_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_outdated_tree_lines_with_extras_notes_and_repeats(upgrade_check: ModuleType) -> None:
    outdated = upgrade_check.parse_outdated_tree(TREE)
    assert outdated == {
        "boto3": ("1.40.61", "1.44.18"),
        "botocore": ("1.40.70", "1.44.18"),
        "python-dateutil": ("2.9.0.post0", "4.0.0"),
        "s3transfer": ("0.14.0", "0.19.3"),
        "fastapi": ("0.150.0", "0.165.0"),
        "httpx": ("0.28.1", "0.29.0"),
        "redis": ("8.1.0", "8.2.0"),
    }


def test_held_back_names_the_requirement_that_excludes_the_newest_release(
    upgrade_check: ModuleType,
) -> None:
    outdated = upgrade_check.parse_outdated_tree(TREE)
    reasons = upgrade_check.held_back_reasons(
        outdated, INSTALLED, ["fastapi==0.150.0", "boto3"], "data-pipelines"
    )
    # the cap of the issue: prefect holds fastapi at 0.150 while 0.165 exists; and our own pin
    assert reasons["fastapi"] == [
        "prefect 3.9.1 requires fastapi<0.151,>=0.139.0",
        "pyproject.toml pins fastapi==0.150.0",
    ]
    assert reasons["boto3"] == ["aiobotocore 2.25.2 requires boto3<1.40.71,>=1.40.46"]
    assert reasons["botocore"] == ["boto3 1.40.61 requires botocore<1.41.0,>=1.40.61"]
    # a cap behind an extra counts (the extra may be in use: the tree shows `(extra: ...)`)
    assert reasons["httpx"] == ["starlette 1.10.0 requires httpx<0.29.0,>=0.27.0"]
    assert reasons["redis"] == ["prefect 3.9.1 requires redis<8.2"]
    # a requirement whose marker cannot hold here holds nothing
    assert reasons["s3transfer"] == []
    # a requirement that allows the newest release holds nothing either (>=0.23 for httpx)
    assert all("prefect" not in reason for reason in reasons["httpx"])


def test_held_back_table_explains_each_line(upgrade_check: ModuleType) -> None:
    outdated = upgrade_check.parse_outdated_tree(TREE)
    reasons = upgrade_check.held_back_reasons(outdated, INSTALLED, [], "data-pipelines")
    text = "\n".join(upgrade_check.render_held(outdated, reasons, {"fastapi", "boto3"}))
    assert text.startswith("Held back (7): the newest allowed version is below the newest release")
    lines = text.splitlines()
    fastapi = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["fastapi"])
    assert lines[fastapi].split() == ["*", "fastapi", "0.150.0", "0.165.0"]
    assert lines[fastapi + 1].strip() == "held by: prefect 3.9.1 requires fastapi<0.151,>=0.139.0"
    s3transfer = next(i for i, line in enumerate(lines) if "s3transfer" in line)
    assert "no requirement names a cap on it" in lines[s3transfer + 1]
    assert "uv lock --upgrade-package s3transfer" in lines[s3transfer + 1]


def test_nothing_held_back_says_so(upgrade_check: ModuleType) -> None:
    assert upgrade_check.render_held({}, {}, set())[-1].strip() == (
        "(none: every package is at its newest release)"
    )


def test_moved_table_explains_each_line_in_words(upgrade_check: ModuleType) -> None:
    old = upgrade_check.Lock.parse(OLD_LOCK)
    new = upgrade_check.Lock.parse(NEW_LOCK)
    lines = upgrade_check.render_moves(old, new, {"prefect", "sqlglot"}, "data-pipelines")
    text = "\n".join(lines)
    assert lines[0] == "Packages moved (6; * = a direct dependency of pyproject.toml)"
    assert "data-pipelines" not in text.split("newest allowed\n", 2)[-1]  # the project itself

    def row(name: str) -> tuple[list[str], str]:
        index = next(i for i, line in enumerate(lines) if line[2:].startswith(f"{name} "))
        return lines[index].split(), lines[index + 1].strip()

    # `networkx 3.6.1 -> 3.6.1, 3.7`: the lock forks per Python
    cells, words = row("networkx")
    assert cells == ["networkx", "3.6.1", "->", "3.6.1,", "3.7"]
    assert words.startswith("two versions in the new lock, one per environment")
    assert "3.6.1 for python_full_version < '3.12'" in words
    assert "3.7 for python_full_version >= '3.12'" in words
    assert words.endswith("indirect")
    # `ruamel-yaml-clib 0.2.15 -> -`: no longer needed
    cells, words = row("ruamel-yaml-clib")
    assert cells == ["ruamel-yaml-clib", "0.2.15", "->", "-"]
    assert words == (
        "dropped: nothing requires it any more at the newest versions (was required by ruamel-yaml)"
    )
    cells, words = row("whenever")
    assert cells == ["whenever", "-", "->", "0.11.0"]
    assert words == "new: now required by prefect"
    cells, words = row("prefect")
    assert cells == ["*", "prefect", "3.9.1", "->", "3.10.0"]
    assert words.startswith("minor upgrade") and words.endswith(
        "a direct dependency (pyproject.toml)"
    )
    assert row("sqlglot")[1].startswith("major upgrade")
    assert row("ruamel-yaml")[1].startswith("minor upgrade")
    assert "fastapi" not in text  # unchanged: not a line


def test_kinds_of_move(upgrade_check: ModuleType) -> None:
    kind = upgrade_check._change_kind
    assert kind("1.2.3", "1.2.4").startswith("patch upgrade")
    assert kind("1.2.3", "1.3.0").startswith("minor upgrade (new features")
    assert kind("0.18.17", "0.19.1").startswith("minor upgrade of a 0.x release")
    assert kind("1.2.3", "2.0").startswith("major upgrade")
    assert kind("2.0", "1.9").startswith("downgrade")
    assert kind("2.9.0", "2.9.0.post0").startswith("re-release")


def test_nothing_moved_says_so(upgrade_check: ModuleType) -> None:
    lock = upgrade_check.Lock.parse(OLD_LOCK)
    assert upgrade_check.render_moves(lock, lock, set(), "data-pipelines")[-1].strip() == (
        "(none: the lock already holds the newest allowed versions)"
    )
