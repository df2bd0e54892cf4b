"""The sha256 of every alert message the automations send, for this tree or beside another commit.

A message is what one automation action hands Prefect: its block (Slack, PagerDuty trigger,
PagerDuty resolve), its subject and its body, as Jinja templates after infra/alert_templates.py
filled in their shared parts and windows (Prefect renders the Jinja when the automation fires).
Equal hashes mean the same text reaches the same block, whatever the automations are called or
how they are defined. Every tree is read with the defaults: no ALERTING__/DATA_PIPELINES__
overrides, the `[alerting]` windows' default values, the tree's own timeouts.

    python scripts/alert_message_hashes.py                  # this tree, one line per message
    python scripts/alert_message_hashes.py --compare 0bb1b05  # that commit beside this tree
    python scripts/alert_message_hashes.py --json           # this tree, for other tools

`--compare REF` extracts REF with `git archive` into a temporary folder (no worktree, nothing
checked out) and reads it with this tree's virtual environment. One row per message subject:
the body hashes on each side, `same` when the subject and every body match, else `changed`,
`only before` or `only after`, and the automations that send it on each side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFIX = "data-pipelines: "

# Runs inside the tree being read (its `infra` package first on sys.path).
_COLLECT = r"""
import json
from uuid import UUID
from infra import alerting

blocks = alerting.BlockIds(
    slack=UUID(int=1), pagerduty=UUID(int=2), pagerduty_resolve=UUID(int=3)
)
channel = {UUID(int=1): "slack", UUID(int=2): "pagerduty", UUID(int=3): "pagerduty-resolve"}
rows = []
for automation in alerting.automation_definitions(blocks, alerting.AlertWindows()):
    for index, action in enumerate(automation.actions):
        rows.append(
            {
                "automation": automation.name,
                "action": index,
                "channel": channel[action.block_document_id],
                "subject": action.subject,
                "body": action.body,
            }
        )
print(json.dumps(rows))
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def collect(tree: Path) -> list[dict[str, Any]]:
    """Every action's message in `tree`, read in a fresh interpreter with default settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ALERTING__", "DATA_PIPELINES"))
    }
    env["PYTHONPATH"] = str(tree)
    env.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    result = subprocess.run(
        [sys.executable, "-c", _COLLECT],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"reading {tree} failed:\n{result.stderr[-3000:]}")
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    for row in rows:
        row["subject_sha256"] = sha(row["subject"])
        row["body_sha256"] = sha(row["body"])
    return rows


def extract(ref: str, into: Path) -> Path:
    """The tree of commit `ref`, extracted under `into` (git archive; nothing checked out)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=PROJECT_DIR, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _short(name: str) -> str:
    return name.removeprefix(PREFIX)


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (block, subject): both sides' body hashes and senders, and the verdict."""
    keys: dict[tuple[str, str], dict[str, Any]] = {}
    for side, rows in (("before", before), ("after", after)):
        for row in rows:
            entry = keys.setdefault(
                (row["channel"], row["subject_sha256"]),
                {
                    "channel": row["channel"],
                    "subject_sha256": row["subject_sha256"],
                    "subject": row["subject"],
                    "before": defaultdict(set),
                    "after": defaultdict(set),
                },
            )
            entry[side][row["body_sha256"]].add(_short(row["automation"]))
    out = []
    for entry in keys.values():
        bodies_before, bodies_after = set(entry["before"]), set(entry["after"])
        if not bodies_before:
            verdict = "only after"
        elif not bodies_after:
            verdict = "only before"
        else:
            verdict = "same" if bodies_before == bodies_after else "changed"
        out.append({**entry, "verdict": verdict})
    return out


def print_comparison(rows: list[dict[str, Any]], before_label: str, width: int) -> None:
    print(f"Messages of {before_label} (before) and of this tree (after), by block and subject.")
    for row in rows:
        print(
            f"\n{row['verdict'].upper():<12} {row['channel']:<18} subject "
            f"{row['subject_sha256'][:width]}  {row['subject'][:70]!r}"
        )
        for body in sorted(set(row["before"]) | set(row["after"])):
            before = "; ".join(sorted(row["before"].get(body, ()))) or "-"
            after = "; ".join(sorted(row["after"].get(body, ()))) or "-"
            print(f"{'':<13}body {body[:width]}  before: {before}")
            print(f"{'':<13}{'':<{width + 5}}  after:  {after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", metavar="REF", help="a commit to show beside this tree")
    parser.add_argument("--json", action="store_true", help="print this tree's rows as JSON")
    parser.add_argument(
        "--width", type=int, default=16, help="hex digits of each hash shown (64: all)"
    )
    args = parser.parse_args(argv)
    after = collect(PROJECT_DIR)
    if args.json:
        print(json.dumps(after, indent=2))
        return 0
    if not args.compare:
        for row in after:
            print(
                f"{row['channel']:<18} subject {row['subject_sha256'][: args.width]}  "
                f"body {row['body_sha256'][: args.width]}  {_short(row['automation'])}"
            )
        return 0
    with tempfile.TemporaryDirectory(prefix="alert-hashes-") as scratch:
        before = collect(extract(args.compare, Path(scratch)))
    rows = compare(before, after)
    print_comparison(rows, args.compare, args.width)
    counts = defaultdict(int)
    for row in rows:
        counts[row["verdict"]] += 1
    print("\n" + ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
