"""Static checks that keep dependency files in step: Dependabot covers every uv project, and
prefect.yaml's `prefect-version` is the Prefect the lock installs. No server, no network."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from infra.prefect_setup import PREFECT_FILE, PROJECT_DIR, load_prefect_file

DEPENDABOT = PROJECT_DIR / ".github" / "dependabot.yml"


def uv_projects() -> list[str]:
    """Every folder of the repository holding a uv.lock (tracked or new), as Dependabot names
    it: "/" for the root, "/rehearsal/..." below it."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*uv.lock"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    folders = {"/" + str(Path(path).parent).removeprefix(".").strip("/") for path in listed}
    return sorted(folders)


def uv_updates(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dependabot's `uv` entries by directory (`directory:` or each of `directories:`)."""
    found: dict[str, dict[str, Any]] = {}
    for update in config["updates"]:
        if update["package-ecosystem"] != "uv":
            continue
        for directory in update.get("directories") or [update["directory"]]:
            found["/" + directory.strip("/")] = update
    return found


def test_both_uv_projects_are_found() -> None:
    # the product and the Snowflake stand-in's environment (scripts/setup.sh installs both)
    assert {"/", "/rehearsal/snowflake_standin_env"} <= set(uv_projects())


def test_dependabot_covers_every_uv_project_weekly_and_grouped() -> None:
    config = yaml.safe_load(DEPENDABOT.read_text())
    assert config["version"] == 2
    updates = uv_updates(config)
    missing = [folder for folder in uv_projects() if folder not in updates]
    assert not missing, f"uv projects without a Dependabot entry in {DEPENDABOT.name}: {missing}"
    for folder, update in updates.items():
        assert (PROJECT_DIR / folder.lstrip("/") / "uv.lock").exists(), f"no uv.lock in {folder}"
        assert update["schedule"]["interval"] == "weekly", folder
        groups = update.get("groups") or {}
        assert any(g.get("patterns") == ["*"] for g in groups.values()), (
            f"{folder}: its upgrades should arrive grouped (a group with patterns ['*'])"
        )


def test_dependabot_config_passes_its_schema() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.dependabot", str(DEPENDABOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def locked_version(name: str, lock: Path = PROJECT_DIR / "uv.lock") -> str:
    versions = {
        package["version"]
        for package in tomllib.loads(lock.read_text())["package"]
        if package["name"] == name
    }
    assert len(versions) == 1, f"{name}: {sorted(versions)} in {lock.name}"
    return versions.pop()


def test_prefect_yaml_names_the_locked_prefect() -> None:
    declared = str(load_prefect_file()["prefect-version"])
    locked = locked_version("prefect")
    assert declared == locked, (
        f"{PREFECT_FILE.name} says prefect-version {declared}, uv.lock installs {locked}: "
        f"set `prefect-version: {locked}`"
    )
