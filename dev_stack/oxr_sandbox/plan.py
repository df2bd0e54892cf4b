"""Which OXR features the sandbox's app ids may use (usage.json's `plan`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxPlan:
    """Which OXR features the sandbox app id may use; the default allows everything served."""

    name: str = "Sandbox Unlimited"
    update_frequency: str = "60-minute"
    historical: bool = True
    base: bool = True
    symbols: bool = True
    experimental: bool = True
    time_series: bool = False  # time-series.json is not served by the sandbox
    convert: bool = False  # convert/ is not served by the sandbox

    @classmethod
    def free(cls) -> SandboxPlan:
        """OXR's Free plan: USD base only, no `symbols`, historical allowed."""
        return cls(name="Free", base=False, symbols=False, experimental=False)

    def features(self) -> dict[str, bool]:
        """The `features` object of usage.json (OXR's five documented keys, nothing more)."""
        return {
            "base": self.base,
            "symbols": self.symbols,
            "experimental": self.experimental,
            "time-series": self.time_series,
            "convert": self.convert,
        }
