"""`make upgrade-check`: would the newest allowed versions work? Never touches the repo's lock.

1. copies the checkout (tracked and untracked, not ignored files) into a scratch folder;
2. there, turns every exact pin `name==X` of pyproject.toml into a floor `name>=X` (so nothing
   moves backwards; other bounds such as `<5` stay) and runs `uv lock --upgrade`: the newest
   versions every constraint allows, including the caps our dependencies declare themselves;
   exports requirements.txt from that lock and makes the copy a git repository (`git add`);
3. `uv sync --frozen` into the scratch copy's own `.venv` and runs the fast tests there (the
   Snowflake stand-in keeps its own locked environment, `.venv-standin`);
4. runs the same tests on the locked environment (`.venv`) unless `--no-baseline`, so a test
   that already fails is told apart from one the upgrade breaks;
5. prints the packages that moved (locked -> newest allowed), each line explained in words;
   the packages held below their newest release and what holds each (`uv tree --outdated` on
   the upgraded lock, and the requirement of an installed package, or of pyproject.toml, that
   excludes the newest release); the tests passed/failed per file, and the tests that fail
   only after the upgrade. Exit 1 if any does.

`python scripts/upgrade_check.py [--keep-pins] [--no-baseline] [--keep] [-- TESTS...]`
`--keep-pins` leaves exact pins alone (only unpinned and indirect packages move).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The fast tests: no Prefect server, no full stack; dlt + DuckDB + sqlglot (local pipe, products,
# exchange rates), the Snowflake connector against the stand-in, the SQL splitter, platform files.
# Named in the Makefile too (UPGRADE_CHECK_TESTS); a few minutes on 2 cores.
FAST_TESTS = (
    "tests/test_snowflake_sql.py",
    "tests/test_snowflake_standin.py",
    "tests/test_exchange_rates.py",
    "tests/test_products.py",
    "tests/test_products_types.py",
    "tests/test_oxr_data_contract.py",
    "tests/test_oxr_client.py",
    "tests/test_architecture.py",
    "tests/test_platform_files.py",
    "tests/test_environment.py",
    "tests/test_retry_policy.py",
    "tests/test_runner.py",
)
_EXACT_PIN = re.compile(
    r'"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?)==(?P<version>[^",;]+)"'
)


# A package line of `uv tree --outdated`: `├── fastapi v0.150.0 (latest: v0.165.0)`, with
# optional extras `httpx[http2]`, notes `(extra: redis)`, `(group: dev)` and `(*)` (repeated).
_TREE_LINE = re.compile(
    r"^[\s│├└─]*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])? v(?P<version>\S+)(?P<rest>.*)$"
)
_TREE_LATEST = re.compile(r"\(latest: v(?P<latest>[^)\s]+)\)")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
# Run in the scratch venv: every installed distribution, its version and its requirements.
_INSTALLED_SCRIPT = """
import importlib.metadata as m, json
print(json.dumps([
    {"name": d.metadata["Name"], "version": d.version, "requires": d.requires or []}
    for d in m.distributions()
]))
"""


def canonical(name: str) -> str:
    """PEP 503 name: `Ruamel.Yaml_Clib` -> `ruamel-yaml-clib` (uv.lock and uv tree use it)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Lock:
    """What a uv.lock holds: each package's versions (with the Python/platform range each one
    is for, when the lock forks) and who requires each package."""

    versions: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    required_by: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Lock:
        lock = cls()
        for package in tomllib.loads(text).get("package", []):
            name = canonical(package["name"])
            if "version" in package:
                markers = list(package.get("resolution-markers", []))
                lock.versions.setdefault(name, []).append((package["version"], markers))
            dependencies = list(package.get("dependencies", []))
            for extra in package.get("optional-dependencies", {}).values():
                dependencies += extra
            for group in package.get("dev-dependencies", {}).values():
                dependencies += group
            for dependency in dependencies:
                lock.required_by.setdefault(canonical(dependency["name"]), set()).add(name)
        for entries in lock.versions.values():
            entries.sort(key=lambda entry: _version_key(entry[0]))
        return lock

    def shown(self, name: str) -> str:
        """`3.6.1` or `3.6.1, 3.7` (one per fork) or `-` (not in this lock)."""
        entries = self.versions.get(name)
        return ", ".join(version for version, _ in entries) if entries else "-"


def _version_key(text: str) -> tuple[int, object]:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def _change_kind(before: str, after: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        old, new = Version(before), Version(after)
    except InvalidVersion:
        return f"changed ({before} -> {after})"
    if new < old:
        return "downgrade: a newer package that depends on it allows only an older release"
    a, b = [*old.release, 0, 0][:3], [*new.release, 0, 0][:3]
    if a[0] != b[0]:
        return "major upgrade (may break an API: read its changelog)"
    if a[1] != b[1] and a[0] == 0:
        return "minor upgrade of a 0.x release (0.x minors may break an API)"
    if a[1] != b[1]:
        return "minor upgrade (new features, meant to be compatible)"
    if a[2] != b[2]:
        return "patch upgrade (fixes only)"
    return "re-release of the same version (post or local release)"


def _names(names: Iterable[str], project: str, limit: int = 4) -> str:
    shown = sorted("pyproject.toml" if name == project else name for name in names)
    more = len(shown) - limit
    return ", ".join(shown[:limit]) + (f" and {more} more" if more > 0 else "")


def explain_move(name: str, old: Lock, new: Lock, direct: set[str], project: str) -> str:
    """One moved package's table line, in words: what kind of move it is and why."""
    before, after = old.versions.get(name, []), new.versions.get(name, [])
    role = "a direct dependency (pyproject.toml)" if name in direct else "indirect"
    if not before:
        who = new.required_by.get(name, set())
        return f"new: now required by {_names(who, project)}" if who else "new"
    if not after:
        who = old.required_by.get(name, set())
        was = f" (was required by {_names(who, project)})" if who else ""
        return f"dropped: nothing requires it any more at the newest versions{was}"
    if len(after) > 1 or len(before) > 1:
        forks = "; ".join(
            f"{version} for {' or '.join(markers) if markers else 'every other environment'}"
            for version, markers in after
        )
        count = {2: "two", 3: "three"}.get(len(after), str(len(after)))
        if len(after) > 1:
            return (
                f"{count} versions in the new lock, one per environment (the newest release "
                f"does not support every Python we allow, or a requirement differs by "
                f"environment): {forks}; {role}"
            )
        return f"one version again for every environment (was {len(before)}): {role}"
    return f"{_change_kind(before[0][0], after[0][0])}; {role}"


def parse_outdated_tree(text: str) -> dict[str, tuple[str, str]]:
    """`uv tree --outdated` output -> {package: (version in the lock, newest release)} for the
    packages whose newest release is not the locked one."""
    outdated: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        match = _TREE_LINE.match(line)
        if not match:
            continue
        latest = _TREE_LATEST.search(match["rest"])
        if latest:
            outdated[canonical(match["name"])] = (match["version"], latest["latest"])
    return outdated


def _marker_applies(requirement: object) -> bool:
    """Whether a requirement's marker can hold here: for any extra it names, or none."""
    marker = getattr(requirement, "marker", None)
    if marker is None:
        return True
    extras = _EXTRA_MARKER.findall(str(marker)) or [""]
    return any(marker.evaluate({"extra": extra}) for extra in extras)


def held_back_reasons(
    outdated: dict[str, tuple[str, str]],
    installed: list[dict[str, object]],
    project_requirements: Iterable[str] = (),
    project: str = "",
) -> dict[str, list[str]]:
    """For each package below its newest release: the requirements that exclude that release,
    as `prefect 3.9.1 requires fastapi<0.151.0,>=0.111.0` (empty: no installed package caps it)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    sources = [
        (str(dist["name"]), str(dist["version"]), [str(r) for r in dist.get("requires") or []])
        for dist in installed
        if canonical(str(dist["name"])) != project  # its requirements: pyproject.toml's, below
    ]
    sources.append(("pyproject.toml", "", list(project_requirements)))
    reasons: dict[str, list[str]] = {name: [] for name in outdated}
    for holder, holder_version, requires in sources:
        for text in requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            name = canonical(requirement.name)
            if name not in outdated or not _marker_applies(requirement):
                continue
            try:
                newest = Version(outdated[name][1])
            except InvalidVersion:
                continue
            if requirement.specifier.contains(newest, prereleases=True):
                continue
            who = f"{holder} {holder_version}".strip()
            verb = "pins" if holder == "pyproject.toml" else "requires"
            reason = f"{who} {verb} {requirement.name}{requirement.specifier}"
            if reason not in reasons[name]:
                reasons[name].append(reason)
    return reasons


def render_moves(old: Lock, new: Lock, direct: set[str], project: str) -> list[str]:
    """The "Packages moved" table: every package whose locked version(s) differ, explained."""
    moved = sorted(
        name
        for name in set(old.versions) | set(new.versions)
        if old.shown(name) != new.shown(name) and name != project
    )
    lines = [
        f"Packages moved ({len(moved)}; * = a direct dependency of pyproject.toml)",
        "  locked: what uv.lock installs today; newest allowed: what `uv lock --upgrade` picks",
        "  with every == pin turned into a floor (the newest release every requirement allows);",
        "  '-': not in that lock; 'a, b': one version per environment (the lock forks).",
    ]
    if not moved:
        return [*lines, "  (none: the lock already holds the newest allowed versions)"]
    width = max(len(name) for name in moved) + 2
    column = max(len(old.shown(name)) for name in moved) + 2
    lines.append(f"  {'package':<{width}} {'locked':<{column}} -> newest allowed")
    for name in moved:
        star = "*" if name in direct else " "
        lines.append(f"{star} {name:<{width}} {old.shown(name):<{column}} -> {new.shown(name)}")
        lines.append(f"  {'':<{width}}   {explain_move(name, old, new, direct, project)}")
    return lines


def render_held(
    outdated: dict[str, tuple[str, str]], reasons: dict[str, list[str]], direct: set[str]
) -> list[str]:
    """The "Held back" table: packages the upgrade could not take to their newest release."""
    lines = [
        f"Held back ({len(outdated)}): the newest allowed version is below the newest release,",
        "  because a requirement (of an installed package, or of pyproject.toml) excludes it.",
    ]
    if not outdated:
        return [*lines, "  (none: every package is at its newest release)"]
    width = max(len(name) for name in outdated) + 2
    column = max(len(version) for version, _ in outdated.values()) + 2
    lines.append(f"  {'package':<{width}} {'allowed':<{column}} newest release")
    for name in sorted(outdated):
        version, latest = outdated[name]
        star = "*" if name in direct else " "
        lines.append(f"{star} {name:<{width}} {version:<{column}} {latest}")
        why = reasons.get(name) or []
        if why:
            lines.append(f"  {'':<{width}}   held by: " + "; ".join(why))
        else:
            lines.append(
                f"  {'':<{width}}   no requirement names a cap on it: its newest release may "
                "not support every Python we allow, or taking it would break another package's "
                f"cap (`uv lock --upgrade-package {name}` in a scratch copy says which)"
            )
    return lines


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def direct_names(pyproject: Path) -> set[str]:
    """pyproject.toml's direct dependencies (every group), canonical names."""
    return {
        canonical(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0])
        for spec in project_requirements(pyproject)
    }


def project_requirements(pyproject: Path) -> list[str]:
    """Every requirement string of pyproject.toml (dependencies and groups) as written."""
    data = tomllib.loads(pyproject.read_text())
    specs = list(data["project"].get("dependencies", []))
    for group in data.get("dependency-groups", {}).values():
        specs += [spec for spec in group if isinstance(spec, str)]
    return specs


def installed_distributions(python: Path, env: dict[str, str]) -> list[dict[str, object]]:
    """Name, version and requirements of every distribution installed for `python`."""
    result = subprocess.run(
        [str(python), "-c", _INSTALLED_SCRIPT], env=env, capture_output=True, text=True
    )
    return json.loads(result.stdout) if result.returncode == 0 else []


def copy_checkout(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = PROJECT_DIR / raw.decode()
        if source.is_file():
            destination = target / raw.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def relax_pins(pyproject: Path) -> int:
    text = pyproject.read_text()
    relaxed, count = _EXACT_PIN.subn(lambda m: f'"{m["name"]}>={m["version"]}"', text)
    pyproject.write_text(relaxed)
    return count


def run(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise SystemExit(f"upgrade-check: {what} failed:\n" + "\n".join(tail))


def run_tests(python: Path, cwd: Path, tests: list[str], env: dict[str, str], report: Path):
    started = time.monotonic()
    pytest = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    subprocess.run(
        [*pytest, *tests],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    outcomes: dict[str, str] = {}
    if report.exists():
        for case in ElementTree.parse(report).iter("testcase"):
            path = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
            test_id = f"{path}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                outcomes[test_id] = "failed"
            elif case.find("skipped") is not None:
                outcomes[test_id] = "skipped"
            else:
                outcomes[test_id] = "passed"
    return outcomes, time.monotonic() - started


def per_file(outcomes: dict[str, str]) -> dict[str, Counter[str]]:
    files: dict[str, Counter[str]] = {}
    for test_id, outcome in outcomes.items():
        files.setdefault(test_id.split("::", 1)[0], Counter())[outcome] += 1
    return files


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/upgrade_check.py", description=__doc__)
    parser.add_argument("--keep-pins", action="store_true", help="do not relax == pins")
    parser.add_argument("--no-baseline", action="store_true", help="skip the locked run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("tests", nargs="*", help=f"test paths (default: {' '.join(FAST_TESTS)})")
    args = parser.parse_args()
    tests = args.tests or list(FAST_TESTS)
    lock_before = sha256(PROJECT_DIR / "uv.lock")

    scratch = Path(tempfile.mkdtemp(prefix="upgrade-check-"))
    project = scratch / "project"
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env["UV_PYTHON_DOWNLOADS"] = "never"
    # the stand-in keeps its own lock and venv: the checkout's
    env["DATA_PIPELINES_STANDIN_PYTHON"] = str(PROJECT_DIR / ".venv-standin" / "bin" / "python")
    try:
        print(f"upgrade-check: scratch copy in {project}")
        copy_checkout(project)
        relaxed = 0 if args.keep_pins else relax_pins(project / "pyproject.toml")
        print(f"upgrade-check: {relaxed} exact pins relaxed to floors; uv lock --upgrade")
        python = sys.executable
        run(["uv", "lock", "--upgrade", "--quiet"], project, env, "uv lock --upgrade")
        # as an upgrade commit would: requirements.txt exported from the new lock, and the
        # copy a git repository of its own (tests read `git ls-files`)
        export = ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
        run([*export, "--quiet", "-o", "requirements.txt"], project, env, "uv export")
        run(["git", "init", "--quiet"], project, env, "git init")
        run(["git", "add", "--all"], project, env, "git add")
        run(
            ["uv", "sync", "--frozen", "--quiet", "--python", python],
            project,
            env,
            "uv sync (scratch venv)",
        )
        old = Lock.parse((PROJECT_DIR / "uv.lock").read_text())
        new = Lock.parse((project / "uv.lock").read_text())
        direct = direct_names(PROJECT_DIR / "pyproject.toml")
        pyproject = tomllib.loads((project / "pyproject.toml").read_text())
        project_name = canonical(pyproject["project"]["name"])
        # what the upgrade could not take to its newest release, and the requirement holding it
        tree = subprocess.run(
            ["uv", "tree", "--outdated", "--frozen", "--all-groups"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        outdated = parse_outdated_tree(tree.stdout) if tree.returncode == 0 else None
        reasons = (
            held_back_reasons(
                outdated,
                installed_distributions(project / ".venv" / "bin" / "python", env),
                project_requirements(project / "pyproject.toml"),
                project_name,
            )
            if outdated
            else {}
        )

        print(f"upgrade-check: fast tests on the newest versions ({len(tests)} files)")
        upgraded, upgraded_s = run_tests(
            project / ".venv" / "bin" / "python", project, tests, env, scratch / "new.xml"
        )
        baseline: dict[str, str] = {}
        baseline_s = 0.0
        if not args.no_baseline:
            print("upgrade-check: the same tests on the locked versions (.venv)")
            baseline, baseline_s = run_tests(
                PROJECT_DIR / ".venv" / "bin" / "python",
                PROJECT_DIR,
                tests,
                env,
                scratch / "old.xml",
            )
    finally:
        if args.keep:
            print(f"upgrade-check: kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    print("\n".join(render_moves(old, new, direct, project_name)))
    print()
    if outdated is None:
        print(f"Held back: `uv tree --outdated` failed: {tree.stderr.strip()[-500:]}")
    else:
        print("\n".join(render_held(outdated, reasons, direct)))

    print()
    heading = "newest: passed failed" + ("" if args.no_baseline else "  | locked: passed failed")
    print(
        f"Fast tests ({upgraded_s:.0f} s on the newest"
        + ("" if args.no_baseline else f", {baseline_s:.0f} s on the locked")
        + ")"
    )
    files_new, files_old = per_file(upgraded), per_file(baseline)
    fwidth = max([len(f) for f in files_new] + [10]) + 2
    print(f"  {'file':<{fwidth}} {heading}")
    for name in sorted(set(files_new) | set(files_old)):
        n, o = files_new.get(name, Counter()), files_old.get(name, Counter())
        line = f"  {name:<{fwidth}} {n['passed']:>14} {n['failed']:>6}"
        if not args.no_baseline:
            line += f"  | {o['passed']:>14} {o['failed']:>6}"
        print(line)
    total_new = Counter(upgraded.values())
    total_old = Counter(baseline.values())
    line = f"  {'total':<{fwidth}} {total_new['passed']:>14} {total_new['failed']:>6}"
    if not args.no_baseline:
        line += f"  | {total_old['passed']:>14} {total_old['failed']:>6}"
    print(line)

    broken = sorted(t for t, o in upgraded.items() if o == "failed" and baseline.get(t) != "failed")
    already = sorted(
        t for t, o in upgraded.items() if o == "failed" and baseline.get(t) == "failed"
    )
    if already:
        print(f"\nFailing on the locked versions too ({len(already)}), not the upgrade's doing:")
        for test_id in already:
            print(f"  {test_id}")
    if broken:
        label = "Failing on the newest versions" + ("" if args.no_baseline else " only")
        print(f"\n{label} ({len(broken)}):")
        for test_id in broken:
            print(f"  {test_id}")
    if not upgraded:
        print("\nupgrade-check: no test results (pytest did not run?)")
        broken = ["(no results)"]

    lock_after = sha256(PROJECT_DIR / "uv.lock")
    assert lock_after == lock_before, "upgrade-check changed the repo's uv.lock"
    print(f"\nuv.lock of the repo untouched (sha256 {lock_after[:12]})")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
