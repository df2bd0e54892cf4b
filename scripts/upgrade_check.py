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
5. prints the packages that moved (locked -> newest allowed) and the tests passed/failed per
   file, and the tests that fail only after the upgrade. Exit 1 if any does.

`python scripts/upgrade_check.py [--keep-pins] [--no-baseline] [--keep] [-- TESTS...]`
`--keep-pins` leaves exact pins alone (only unpinned and indirect packages move).
"""

from __future__ import annotations

import argparse
import hashlib
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


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def locked_versions(lock: Path) -> dict[str, str]:
    packages: dict[str, set[str]] = {}
    for package in tomllib.loads(lock.read_text())["package"]:
        if "version" in package:
            packages.setdefault(package["name"], set()).add(package["version"])
    return {name: ", ".join(sorted(versions)) for name, versions in packages.items()}


def direct_names(pyproject: Path) -> set[str]:
    data = tomllib.loads(pyproject.read_text())
    specs = list(data["project"]["dependencies"])
    for group in data.get("dependency-groups", {}).values():
        specs += [s for s in group if isinstance(s, str)]
    return {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower() for spec in specs}


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
        old = locked_versions(PROJECT_DIR / "uv.lock")
        new = locked_versions(project / "uv.lock")
        direct = direct_names(PROJECT_DIR / "pyproject.toml")

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

    moved = sorted(
        (name, old.get(name, "-"), new.get(name, "-"))
        for name in set(old) | set(new)
        if old.get(name) != new.get(name) and name != "data-pipelines"
    )
    print()
    print(f"Packages moved ({len(moved)}; * = a direct dependency of pyproject.toml)")
    width = max([len(name) for name, _, _ in moved] + [7]) + 2
    print(f"  {'package':<{width}} {'locked':<22} -> newest allowed")
    for name, before, after in moved:
        star = "*" if name in direct else " "
        print(f"{star} {name:<{width}} {before:<22} -> {after}")
    if not moved:
        print("  (none: the lock already holds the newest allowed versions)")

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
