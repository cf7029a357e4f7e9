"""A chain step's counts: samples in, kept, and rejected per reason code.

Shard markers and funnel.json hold these as `{"step", "in", "kept", "rejected"}` objects, keys
in that order; `to_dict` writes exactly that, so run folders written before this record resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepStats:
    step: str  # the step's label in its chain: its name, or name#2 when repeated
    entered: int = 0  # "in" on disk (a keyword here)
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason code -> samples, in first-seen order

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def add(self, other: StepStats) -> None:
        """Fold in another shard's counts for the same step."""
        self.entered += other.entered
        self.kept += other.kept
        for reason, count in other.rejected.items():
            self.reject(reason, count)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "in": self.entered, "kept": self.kept, "rejected": dict(self.rejected)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepStats:
        return cls(data["step"], data["in"], data["kept"], dict(data["rejected"]))
