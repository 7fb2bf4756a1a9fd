"""The rule set as the compiled core applies it.

A rule whose conditions, threshold and grouping the core can evaluate on record fields
(``otsec._core.FIELDS``) runs entirely in the core: only the first record of each finding
crosses into Python, repeats are counted there. Conditions on roles, the baseline's state
and learned functions (``otsec._core.CONTEXT_FIELDS``) are evaluated there too, from
what Python told the core (it asks the policy for a host's role it does not hold). Any
other rule is *passthrough*: the core checks the conditions it can, and every candidate
crosses for the Python matcher.
"""

from __future__ import annotations

from typing import Any

from otsec import _core
from otsec.detect.fields import template_fields
from otsec.detect.ruleset import CompiledRule, RuleSet
from otsec.protocols import RECORD_PROTOCOLS

CORE_FIELDS = frozenset(_core.FIELDS)
CONTEXT_FIELDS = frozenset(_core.CONTEXT_FIELDS)
#: computed text fields, told apart in the core by the record fields they are made of
SOURCES = {
    "function_name": ["protocol", "function_code"], "block": ["block_type", "block_number"],
    "szl_hex": ["szl_id"], "pi_name": ["pi_service"], "diag_name": ["subfunction"],
    "umas_hex": ["umas_function"], "userdata_name": ["group", "subfunction"],
    "value_text": ["function_code", "value"], "table": ["function_code", "quantity"],
}  # fmt: skip


def _keys(names: list[str]) -> list[str] | None:
    out: list[str] = []
    for name in names:
        for field in SOURCES.get(name, [name]):
            if field not in CORE_FIELDS:
                return None
            out.append(field)
    return out


def _spec(c: CompiledRule) -> tuple[Any, ...]:
    rule = c.rule
    conditions = [(x.field, x.op, sorted(x.value, key=repr) if isinstance(x.value, frozenset)
                   else x.value) for x in c.conditions
                  if x.field in CORE_FIELDS or x.field in CONTEXT_FIELDS]
    keys = _keys([*c.group_by, *template_fields(c.detail)])
    passthrough = (len(conditions) < len(c.conditions) or keys is None
                   or (c.threshold is not None and c.threshold.distinct is not None
                       and c.threshold.distinct not in CORE_FIELDS))
    threshold = None
    if c.threshold is not None:
        t = c.threshold
        threshold = (t.count, t.window, t.by, t.distinct)
    protocols = list(RECORD_PROTOCOLS) if rule.protocol == "any" else [rule.protocol]
    return (protocols, c.event == "anomaly", conditions, passthrough, threshold, keys or [],
            c.actor, c.answerable, rule.id)


def compile_rules(ruleset: RuleSet) -> tuple[list[tuple[Any, ...]], list[CompiledRule]]:
    """(specs for ``Engine.set_rules``, the compiled rules in the same order)."""
    rules = [c for c in ruleset.rules.values() if c.kind == "signature"]
    return [_spec(c) for c in rules], rules


def boundaries(ruleset: RuleSet) -> list[float]:
    """The times at which site policy changes (maintenance windows open and close)."""
    return sorted({t for m in ruleset.maintenance for t in (m.start, m.end)})
