"""What a rule is: its meaning, severity and ATT&CK mapping (the rules live in rules/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from otsec.detect.attack import TECHNIQUES

SEVERITIES = {"low": 1, "medium": 2, "high": 3, "critical": 4}
SEVERITY_NAMES = {level: name for name, level in SEVERITIES.items()}
RISK = {1: 21, 2: 47, 3: 73, 4: 99}  # Elastic's usual risk score per severity


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    description: str  # the one-line rationale
    severity: str
    techniques: tuple[str, ...]
    category: str
    protocol: str
    reference: str
    version: int = 1
    explicit_tactics: tuple[str, ...] = ()

    @property
    def severity_level(self) -> int:
        return SEVERITIES[self.severity]

    @property
    def tactics(self) -> tuple[str, ...]:
        if self.explicit_tactics:
            return self.explicit_tactics
        seen: list[str] = []
        for t in self.techniques:
            for tactic in TECHNIQUES[t][1]:
                if tactic not in seen:
                    seen.append(tactic)
        return tuple(seen)
