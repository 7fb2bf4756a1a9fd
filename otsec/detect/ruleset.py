"""The declarative rule language: load YAML, validate it, compile it. Never ``eval``.

A rules file is a mapping with ``rules`` (a list), and optionally ``suppress`` and
``maintenance`` (site policy). Every error names the file and line::

    rules/modbus.yaml:14: rule otsec-modbus-write: unknown severity 'hihg'
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from otsec.detect.attack import TACTICS, TECHNIQUES
from otsec.detect.catalog import SEVERITIES, Rule
from otsec.detect.fields import known_field, template_fields
from otsec.protocols import RECORD_PROTOCOLS

PROTOCOLS = (*RECORD_PROTOCOLS, "any")
RULE_KEYS = {"id", "name", "description", "severity", "category", "techniques", "tactics",
             "reference",
             "protocol", "version", "kind", "event", "match", "message", "target", "detail",
             "group_by", "threshold", "actor", "answerable", "enabled"}
REQUIRED = ("id", "name", "description", "severity", "category", "techniques", "reference",
            "protocol")
TEXT_KEYS = ("name", "description", "severity", "category", "reference", "protocol", "kind",
             "event", "message", "target", "detail", "actor")
OPERATORS = {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "any_in",
             "any_not_in", "mask_any", "exists"}
THRESHOLD_KEYS = {"count", "window", "by", "distinct"}
BY = ("client", "server", "source", "destination")
ACTORS = ("sender", "receiver", "tcp_client")
KINDS = ("signature", "baseline", "counter", "sensor")


class RuleError(Exception):
    """A rules file that cannot be used; the message names file and line."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Keeps the line of every mapping and of every key (libyaml's parser when present)."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)
    out = _Lines()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


class _Lines(dict):  # type: ignore[type-arg]
    line = 0

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Threshold:
    count: int
    window: float
    by: str = "client"
    distinct: str | None = None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    source: str  # file:line
    kind: str = "signature"  # "baseline": raised by the baseline logic, not by matching;
    # "counter": raised from the core's counts of connection attempts; "sensor": raised by
    # the sensor about itself (its heartbeat)
    event: str = "pdu"  # or "anomaly"
    conditions: tuple[Condition, ...] = ()
    message: str = ""
    target: str = ""
    detail: str = ""
    group_by: tuple[str, ...] = ()
    threshold: Threshold | None = None
    actor: str = "sender"
    answerable: bool | None = None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Suppression:
    source: str
    rule: str | None = None
    source_ip: Network | None = None  # an address is a /32 (/128) network
    destination_ip: Network | None = None
    reason: str = ""

    def covers(self, rule: str, src: str, dst: str) -> bool:
        return ((self.rule is None or self.rule == rule)
                and (self.source_ip is None or _within(src, self.source_ip))
                and (self.destination_ip is None or _within(dst, self.destination_ip)))


def _within(address: str, net: Network) -> bool:
    try:
        return ipaddress.ip_address(address) in net
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Maintenance:
    source: str
    start: float
    end: float
    hosts: frozenset[str] = frozenset()
    reason: str = ""


@dataclass
class RuleSet:
    rules: dict[str, CompiledRule] = field(default_factory=dict)
    suppress: list[Suppression] = field(default_factory=list)
    maintenance: list[Maintenance] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def catalog(self) -> dict[str, Rule]:
        return {rid: c.rule for rid, c in self.rules.items()}


def builtin_dir() -> Path:
    """The shipped rules, inside the package (``rules/`` in a checkout links to them)."""
    return Path(__file__).resolve().parents[1] / "rules"


def load(paths: list[Path] | None = None, builtin: bool = True) -> RuleSet:
    """Built-in rules, then each extra file or directory (later ids override earlier)."""
    files: list[Path] = []
    for p in ([builtin_dir()] if builtin else []) + list(paths or []):
        if p.is_dir():
            files += sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
        elif p.exists():
            files.append(p)
        else:
            raise RuleError(f"{p}: no such rules file or directory")
    rs = RuleSet()
    for f in files:
        _load_file(f, rs)
    _check_suppressions(rs)
    return rs


def parse_yaml(path: Path, error: type[Exception] = RuleError, trusted: bool = False) -> Any:
    """A YAML file as data, with the lines of its mappings. Aliases may not expand beyond
    ``MAX_NODES`` nodes nor nest beyond ``MAX_DEPTH`` (an alias bomb is an error, not a
    memory exhaustion); ``trusted``: the package's own file, not checked."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise error(f"{where}: cannot read ({why})") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # without an anchor there is no alias: the graph is the file's own size, and only
        # its depth needs a look (a large generated ruleset is not walked twice)
        if not trusted and ("&" in text or _deeper(text)):
            _check_size(node, where, error)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise error(f"{where}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except TypeError as exc:  # e.g. a list used as a mapping key
        raise error(f"{where}: not usable YAML ({exc})") from None
    finally:
        loader.dispose()


MAX_NODES = 1_000_000  # values in a file once its aliases are expanded
MAX_DEPTH = 64


_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _deeper(text: str) -> bool:
    """Whether the text may nest deeper than MAX_DEPTH: by indentation (two columns a level
    at the least) or by brackets of flow style."""
    indent = max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0)
    depth = deepest = 0
    for c in _NOT_BRACKETS.sub("", text):
        depth += 1 if c in "[{" else -1
        deepest = max(deepest, depth)
    return indent // 2 + deepest >= MAX_DEPTH // 2


def _check_size(root: yaml.Node, where: str, error: type[Exception]) -> None:
    """Expanded size of the node graph (aliases are shared nodes), without expanding it."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{where}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH}")
        children = ([n for pair in node.value for n in pair]
                    if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if done:
            total = 1 + sum(size[id(c)] for c in children)
            if total > MAX_NODES:
                raise error(f"{where}:{node.start_mark.line + 1}: expands to more than "
                            f"{MAX_NODES:,} values (aliases)")
            size[id(node)] = total
        elif id(node) not in size:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in size)


def _load_file(path: Path, rs: RuleSet) -> None:
    where = str(path)
    doc = parse_yaml(path, trusted=path.parent == builtin_dir())
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise RuleError(f"{where}:1: a rules file is a mapping with 'rules', 'suppress', "
                        "'maintenance'")
    _unknown(doc, {"rules", "suppress", "maintenance"}, where, "rules file")
    rs.files.append(where)
    for item in _list(doc, "rules", where):
        try:
            compiled = _rule(item, where)
        except (TypeError, ValueError) as exc:  # a list or mapping where a scalar belongs
            raise RuleError(f"{where}:{item.line}: rule {item.get('id', '?')}: a value has "
                            f"the wrong type ({exc})") from None
        rs.rules[compiled.rule.id] = compiled
    for item in _list(doc, "suppress", where):
        rs.suppress.append(_suppression(item, where))
    for item in _list(doc, "maintenance", where):
        rs.maintenance.append(_maintenance(item, where))


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RuleError(f"{where}:{doc.lines.get(key, doc.line)}: '{key}' must be a list")
    for item in value:
        if not isinstance(item, dict):
            raise RuleError(f"{where}:{doc.lines.get(key, doc.line)}: every entry of '{key}' "
                            "is a mapping")
    return value


def _unknown(item: dict[str, Any], allowed: set[str], where: str, what: str) -> None:
    for key in item:
        if key not in allowed:
            raise RuleError(f"{where}:{item.lines.get(key, item.line)}: {what}: unknown key "
                            f"'{key}' (expected one of {', '.join(sorted(allowed))})")


def _rule(item: dict[str, Any], where: str) -> CompiledRule:
    rid = item.get("id", "?")

    def fail(key: str, message: str) -> RuleError:
        return RuleError(f"{where}:{item.lines.get(key, item.line)}: rule {rid}: {message}")

    _unknown(item, RULE_KEYS, where, f"rule {rid}")
    for key in REQUIRED:
        if key not in item:
            raise fail("id", f"missing '{key}'")
    for key in TEXT_KEYS:
        if key in item and not isinstance(item[key], str):
            what = "a mapping" if isinstance(item[key], dict) else \
                "a list" if isinstance(item[key], list) else type(item[key]).__name__
            raise fail(key, f"'{key}' is a text, not {what}")
    if not isinstance(item.get("version", 1), int):
        raise fail("version", "'version' is a whole number")
    if not isinstance(rid, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", rid):
        raise fail("id", "an id is lower-case letters, digits, '-', '_' or '.'")
    if item["severity"] not in SEVERITIES:
        raise fail("severity", f"unknown severity {item['severity']!r} "
                               f"(one of {', '.join(SEVERITIES)})")
    techniques = item["techniques"]
    if not isinstance(techniques, list) or not techniques:
        raise fail("techniques", "'techniques' is a non-empty list of ATT&CK for ICS ids")
    for t in techniques:
        if t not in TECHNIQUES:
            raise fail("techniques", f"unknown ATT&CK for ICS technique {t!r}")
    tactics = item.get("tactics") or []
    if not isinstance(tactics, list):
        raise fail("tactics", "'tactics' is a list of ATT&CK for ICS tactic ids")
    for t in tactics:
        if t not in TACTICS:
            raise fail("tactics", f"unknown ATT&CK for ICS tactic {t!r}")
    if item["protocol"] not in PROTOCOLS:
        raise fail("protocol", f"unknown protocol {item['protocol']!r}")
    kind = item.get("kind", "signature")
    if kind not in KINDS:
        raise fail("kind", f"kind is one of {', '.join(KINDS)}")
    event = item.get("event", "pdu")
    if event not in ("pdu", "anomaly"):
        raise fail("event", "event is 'pdu' or 'anomaly'")
    conditions = tuple(_conditions(item.get("match") or {}, fail))
    if kind == "signature" and not item.get("message"):
        raise fail("id", "a signature rule needs a 'message'")
    for key in ("message", "target", "detail"):
        for name in template_fields(str(item.get(key, ""))):
            if name != "details" and not known_field(name):
                raise fail(key, f"unknown field {{{name}}} in {key}")
    group_by = item.get("group_by") or []
    if not isinstance(group_by, list) or not all(known_field(str(g)) for g in group_by):
        raise fail("group_by", "'group_by' is a list of known fields")
    threshold = _threshold(item.get("threshold"), fail)
    actor = item.get("actor", "sender")
    if actor not in ACTORS:
        raise fail("actor", f"actor is one of {', '.join(ACTORS)}")
    answerable = item.get("answerable")
    if answerable is not None and not isinstance(answerable, bool):
        raise fail("answerable", "'answerable' is true or false")
    rule = Rule(rid, str(item["name"]), str(item["description"]), item["severity"],
                tuple(techniques), str(item["category"]), item["protocol"],
                str(item["reference"]), int(item.get("version", 1)), tuple(tactics))
    return CompiledRule(rule, f"{where}:{item.line}", kind, event, conditions,
                        str(item.get("message", "")), str(item.get("target", "")),
                        str(item.get("detail", "")), tuple(group_by), threshold, actor,
                        answerable)


def _conditions(match: Any, fail: Any) -> list[Condition]:
    if not isinstance(match, dict):
        raise fail("match", "'match' maps field names to values or {operator: value}")
    out = []
    for name, spec in match.items():
        if not known_field(name):
            raise fail("match", f"unknown field '{name}'")
        if isinstance(spec, dict):
            for op, value in spec.items():
                if op not in OPERATORS:
                    raise fail("match", f"field '{name}': unknown operator '{op}' "
                                        f"(one of {', '.join(sorted(OPERATORS))})")
                if op in ("in", "not_in", "any_in", "any_not_in") and not isinstance(value,
                                                                                    list):
                    raise fail("match", f"field '{name}': '{op}' takes a list")
                if op == "between" and not (isinstance(value, list) and len(value) == 2):
                    raise fail("match", f"field '{name}': 'between' takes [low, high]")
                out.append(Condition(name, op, frozenset(value) if op in (
                    "in", "not_in", "any_in", "any_not_in") else value))
        elif isinstance(spec, list):
            out.append(Condition(name, "in", frozenset(spec)))
        else:
            out.append(Condition(name, "eq", spec))
    return out


def _threshold(spec: Any, fail: Any) -> Threshold | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise fail("threshold", "'threshold' is {count, window, by, distinct}")
    for key in spec:
        if key not in THRESHOLD_KEYS:
            raise fail("threshold", f"unknown threshold key '{key}'")
    count, window = spec.get("count"), spec.get("window")
    if not isinstance(count, int) or count < 1 or not isinstance(window, int | float) \
            or window <= 0:
        raise fail("threshold", "threshold needs a positive 'count' and 'window' (seconds)")
    by = spec.get("by", "client")
    if by not in BY:
        raise fail("threshold", f"threshold 'by' is one of {', '.join(BY)}")
    distinct = spec.get("distinct")
    if distinct is not None and not known_field(distinct):
        raise fail("threshold", f"unknown field '{distinct}'")
    return Threshold(count, float(window), by, distinct)


def _suppression(item: dict[str, Any], where: str) -> Suppression:
    _unknown(item, {"rule", "source_ip", "destination_ip", "reason"}, where, "suppress entry")
    if not any(item.get(k) for k in ("rule", "source_ip", "destination_ip")):
        raise RuleError(f"{where}:{item.line}: a suppress entry names a rule, a source_ip or a "
                        "destination_ip")
    rule = item.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise RuleError(f"{where}:{item.lines.get('rule', item.line)}: 'rule' is a rule id")
    nets = []
    for key in ("source_ip", "destination_ip"):
        value = item.get(key)
        try:
            nets.append(None if value is None else ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise RuleError(f"{where}:{item.lines.get(key, item.line)}: {key} {value!r} is not "
                            "an IP address or network") from None
    return Suppression(f"{where}:{item.line}", rule, nets[0], nets[1],
                       str(item.get("reason", "")))


def _check_suppressions(rs: RuleSet) -> None:
    """A suppression of a rule that does not exist suppresses nothing: say so."""
    for s in rs.suppress:
        if s.rule is not None and s.rule not in rs.rules:
            raise RuleError(f"{s.source}: suppress names rule {s.rule!r}, which does not exist "
                            "(see 'otsec rules list')")


def _when(value: Any, where: str, line: int) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise RuleError(f"{where}:{line}: {value!r} is not an ISO 8601 time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _maintenance(item: dict[str, Any], where: str) -> Maintenance:
    _unknown(item, {"start", "end", "hosts", "reason"}, where, "maintenance window")
    if "start" not in item or "end" not in item:
        raise RuleError(f"{where}:{item.line}: a maintenance window needs 'start' and 'end'")
    start = _when(item["start"], where, item.lines.get("start", item.line))
    end = _when(item["end"], where, item.lines.get("end", item.line))
    if end <= start:
        raise RuleError(f"{where}:{item.line}: maintenance window ends before it starts")
    hosts = item.get("hosts") or []
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise RuleError(f"{where}:{item.lines.get('hosts', item.line)}: 'hosts' is a list of "
                        "IP addresses")
    return Maintenance(f"{where}:{item.line}", start, end, frozenset(map(str, hosts)),
                       str(item.get("reason", "")))
