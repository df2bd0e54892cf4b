"""The verification report: one `Check` per fact, rendered for people or as rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pipelines.text_table import text_table


class VerificationFailed(RuntimeError):
    """The data is not what users should read; the message lists every failed check."""


@dataclass(frozen=True)
class Check:
    """One verified fact: which check, on what, whether it held, and the evidence."""

    check: str
    target: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    environment: str
    checked_at: datetime
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def failure_summary(self) -> str:
        """One line per failure: `check TABLE: detail`."""
        return "\n".join(f"{c.check} {c.target}: {c.detail}" for c in self.failures)

    def as_rows(self) -> list[dict[str, Any]]:
        return [{**asdict(c), "ok": "ok" if c.ok else "FAILED"} for c in self.checks]

    def render(self) -> str:
        """The readable report: one line per check, then what failed."""
        lines = [
            f"data-pipelines verify: environment {self.environment}, "
            f"{self.checked_at:%Y-%m-%d %H:%M} UTC",
            "",
            *text_table(
                ("check", "table", "result", "detail"),
                [(c.check, c.target, "ok" if c.ok else "FAILED", c.detail) for c in self.checks],
            ),
        ]
        lines.append("")
        if self.ok:
            lines.append(f"OK: all {len(self.checks)} checks passed.")
        else:
            lines.append(f"FAILED: {len(self.failures)} of {len(self.checks)} checks:")
            lines += [f"  - {line}" for line in self.failure_summary().splitlines()]
        return "\n".join(lines)
