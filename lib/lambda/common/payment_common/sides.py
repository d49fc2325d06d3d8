"""The two sides and the two replication directions."""

from __future__ import annotations

from dataclasses import dataclass

ONPREM = "onprem"
AWS = "aws"
SIDES = (ONPREM, AWS)


def other(side: str) -> str:
    return AWS if side == ONPREM else ONPREM


@dataclass(frozen=True)
class Direction:
    """Replication from `source` to `target`. `forward` is on-prem → AWS, `fallback` AWS → on-prem."""

    source: str
    target: str

    @property
    def name(self) -> str:
        return "forward" if self.source == ONPREM else "fallback"

    @property
    def reverse(self) -> Direction:
        return Direction(self.target, self.source)

    def __str__(self) -> str:
        return f"{self.name} ({self.source} → {self.target})"


FORWARD = Direction(ONPREM, AWS)
FALLBACK = Direction(AWS, ONPREM)
