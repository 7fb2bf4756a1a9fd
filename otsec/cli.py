"""Command line: parse flags, call the library, print. Nothing else lives here."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from otsec import __version__
from otsec.baseline.model import BaselineError
from otsec.capture import CaptureError, NothingAnalysed
from otsec.detect.catalog import SEVERITIES
from otsec.detect.ruleset import RuleError
from otsec.privileges import PrivilegeError
from otsec.text import printable, shown

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_ALERTS = 3


class UserError(Exception):
    """A mistake on the user's side: one line on stderr, exit 2."""


def _search_url(ctx: click.Context, param: click.Parameter, url: str | None) -> str | None:
    """An http(s) URL without a password in it: secrets stay out of argv (and out of ps,
    shell history and logs); they come from the environment or files."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    from otsec.sinks.search import redact

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{redact(url)!r} is not an http:// or https:// URL")
    if parts.password is not None:
        raise click.BadParameter(
            f"{redact(url)}: no password in the URL; set OTSEC_ES_USERNAME and "
            "OTSEC_ES_PASSWORD (or OTSEC_ES_PASSWORD_FILE), or OTSEC_ES_API_KEY")
    return url


def _name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from otsec.sensor import BadName, check_name

    try:
        what = param.opts[0].lstrip("-") if param.opts else "name"
        return None if value is None else check_name(value, what)
    except BadName as exc:
        raise click.BadParameter(str(exc)) from None


def sensor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--site and --sensor (also OTSEC_SITE, OTSEC_SENSOR): who wrote the documents."""
    command = click.option(
        "--sensor", "sensor_name", envvar="OTSEC_SENSOR", default=None, callback=_name,
        help="This sensor's name in every document (observer.name) [default: the hostname]."
    )(command)
    return click.option(
        "--site", envvar="OTSEC_SITE", default="default", show_default=True, callback=_name,
        help="The site (plant, segment group) in every document (labels.site); asset and "
             "edge ids in the cluster are scoped by it.")(command)


def make_sensor(site: str, name: str | None, interface: str | None = None) -> Any:
    from otsec.sensor import Sensor

    return (Sensor(site, name, interface) if name else
            Sensor(site=site, interface=interface))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otsec")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-v", "--verbose", is_flag=True, help="Log what otsec is doing.")
def cli(debug: bool, verbose: bool) -> None:
    """otsec: passive security monitoring for industrial networks."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


@cli.command()
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="otsec-out",
              show_default=True, help="Directory for events, alerts, assets, edges, report.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="What to print: a summary table, or summary.json.")
@click.option("--fail-on", type=click.Choice(list(SEVERITIES)), default=None,
              help="Exit 3 when an alert at or above this severity was raised.")
@click.option("--max-flows", type=click.IntRange(min=100), default=200_000, show_default=True,
              help="Flow table size; the least recently seen flows are ended beyond it.")
@click.option("--events/--no-events", default=True, show_default=True,
              help="Write one document per PDU to events.ndjson.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), default=None,
              help="Protect with this baseline: report deviations from it.")
@click.option("--learn-for", type=str, default=None, metavar="DURATION",
              help="Learn the first DURATION of traffic (30s, 10m, 2h, 1d), then protect.")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path(),
              help="Extra rules/policy file or directory (repeatable); same ids override.")
@click.option("--es", "es_url", default=None, metavar="URL", callback=_search_url,
              help="Ship alerts, assets and edges to Elasticsearch/OpenSearch (credentials "
                   "from OTSEC_ES_* environment variables).")
@click.option("--es-events", is_flag=True, help="Ship the PDU events too.")
@click.option("--es-namespace", default="default", show_default=True,
              help="Data stream namespace (logs-otsec.alert-NAMESPACE).")
@sensor_options
def audit(pcaps: tuple[str, ...], out_dir: str, fmt: str, fail_on: str | None,
          max_flows: int, events: bool, baseline_file: str | None, learn_for: str | None,
          rule_paths: tuple[str, ...], es_url: str | None, es_events: bool,
          es_namespace: str, site: str, sensor_name: str | None) -> int:
    """Audit capture files (pcap, pcapng, gzip of either) offline."""
    from otsec.audit import check_captures, run_audit
    from otsec.detect.ruleset import load

    window = parse_duration(learn_for) if learn_for is not None else None
    baseline = load_baseline(baseline_file) if baseline_file else None
    ruleset = load([Path(p) for p in rule_paths])
    check_captures(pcaps)  # fail fast, before any output directory is made
    total = sum(Path(p).stat().st_size for p in pcaps if p != "-" and Path(p).is_file())
    with progress_bar("auditing", total) as progress:
        result = run_audit(list(pcaps), Path(out_dir), progress=progress,
                           max_flows=max_flows, write_events=events, baseline=baseline,
                           learn_for=window, ruleset=ruleset,
                           sensor=make_sensor(site, sensor_name))
    if es_url is not None:
        result.summary["search"] = ship_audit(result, es_url, es_events, es_namespace)
    if fmt == "json":
        click.echo(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        from rich.console import Console

        from otsec.sinks.console import print_summary

        print_summary(result, Console())
    if fail_on is not None:
        threshold = SEVERITIES[fail_on]
        if any(a["event"]["severity"] >= threshold for a in result.alerts):
            return EXIT_ALERTS
    return 0


@cli.command()
@click.option("-i", "--interface", "iface", required=True, help="The mirror/SPAN port.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="otsec-out",
              show_default=True, help="Directory kept current with the audit's files.")
@click.option("--bpf", default=None, help="Kernel filter (tcpdump syntax); default: the OT "
              "ports, ARP, DNS and DHCP. An empty string captures everything.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), default=None,
              help="Protect with this baseline (and save what a learning window adds).")
@click.option("--learn-for", type=str, default=None, metavar="DURATION",
              help="Learn for DURATION (10m, 2h, 7d), then protect.")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path())
@click.option("--es", "es_url", default=None, metavar="URL", callback=_search_url)
@click.option("--flush-every", type=float, default=5.0, show_default=True,
              help="Seconds between rewrites of the output files.")
@click.option("--user", default="nobody", show_default=True,
              help="Unprivileged user to become once the capture socket is open.")
@click.option("--stay-root", is_flag=True,
              help="Keep running as root (not recommended; prefer CAP_NET_RAW or --user).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Capture processes sharing the interface by flow hash (PACKET_FANOUT).")
@click.option("--heartbeat", "heartbeat_every", type=click.FloatRange(min=1), default=60.0,
              show_default=True, help="Seconds between the sensor's health documents.")
@sensor_options
def monitor(iface: str, out_dir: str, bpf: str | None, baseline_file: str | None,
            learn_for: str | None, rule_paths: tuple[str, ...], es_url: str | None,
            flush_every: float, user: str, stay_root: bool, workers: int,
            heartbeat_every: float, site: str, sensor_name: str | None) -> int:
    """Passive live sensor on a mirror port (receive-only; needs root or CAP_NET_RAW)."""
    from otsec.capture.live import DEFAULT_FILTER
    from otsec.detect.ruleset import load
    from otsec.monitor import Monitor, MonitorOptions

    logging.getLogger().setLevel(logging.INFO)
    path = Path(baseline_file) if baseline_file else None
    if path is not None and not path.exists() and es_url is not None:
        site_baseline(path, es_url, site)
    from otsec.privileges import read_file

    baseline = (load_baseline(baseline_file, read_file) if path is not None and path.exists()
                else None)
    opts = MonitorOptions(
        iface=iface, out_dir=Path(out_dir), bpf=DEFAULT_FILTER if bpf is None else bpf,
        baseline=baseline, baseline_file=path,
        learn_for=parse_duration(learn_for) if learn_for else None,
        rule_paths=tuple(Path(p) for p in rule_paths), es_url=es_url, flush_every=flush_every,
        user=None if stay_root else user, workers=workers,
        sensor=make_sensor(site, sensor_name, iface), heartbeat_every=heartbeat_every)
    if workers > 1 and opts.learn_for is not None:
        raise UserError("learning needs one process: use --workers 1 with --learn-for")
    summary = Monitor(opts, load(list(opts.rule_paths))).run()
    click.echo(f"stopped: {summary['packets']} packets, {sum(summary['pdus'].values())} PDUs, "
               f"{summary['alerts']['total']} alerts in {out_dir}/")
    return 0


@cli.command()
@click.argument("pcaps", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), required=True,
              help="Baseline file to create, or to extend when it exists.")
@click.option("--merge", "merge_files", multiple=True, type=click.Path(dir_okay=False),
              help="Also fold in this baseline (repeatable): e.g. what each sensor of a site "
                   "learned.")
def learn(pcaps: tuple[str, ...], baseline_file: str, merge_files: tuple[str, ...]) -> int:
    """Build (or extend) a baseline from captures of normal operation, and from other
    sensors' baselines."""
    from otsec.audit import check_captures, run_learn
    from otsec.baseline.model import Baseline

    if not pcaps and not merge_files:
        raise click.UsageError("give captures to learn from, or baselines to --merge")
    check_captures(pcaps)
    others = [load_baseline(f) for f in merge_files]  # all readable before anything runs
    path = Path(baseline_file)
    learned = load_baseline(baseline_file) if path.exists() else Baseline()
    for part in [*([run_learn(list(pcaps))] if pcaps else []), *others]:
        learned.merge(part)
    learned.save(path)
    click.echo(f"baseline {path}: {len(learned.assets)} assets, {len(learned.edges)} edges "
               f"from {len(learned.sources)} capture(s)")
    return 0


def site_baseline(path: Path, es_url: str, site: str) -> None:
    """A new sensor starts with its site's shared baseline, when the cluster has one."""
    from otsec.baseline.shared import fetch

    log = logging.getLogger("otsec")
    try:
        got = fetch(_client(es_url)[0], site)
    except Exception as exc:  # the sensor starts anyway (learning, or without a baseline)
        log.warning("site %s: baseline not fetched from the cluster (%s)", site,
                    printable(str(exc), 300))
        return
    if got is None:
        log.info("site %s: no shared baseline in the cluster yet", site)
        return
    got.baseline.save(path)
    log.info("site %s: protecting with the shared baseline version %d (from %s)", site,
             got.version, got.by)


def ship_audit(result: Any, url: str, with_events: bool, namespace: str) -> dict[str, Any]:
    """Send an audit's documents; what the cluster does not take is spooled, not lost."""
    from otsec.health import audit_heartbeat
    from otsec.sinks.search import Spool, audit_actions, deliver, heartbeat_actions

    def lines(name: str, wanted: bool = True) -> Iterator[dict[str, Any]]:  # streamed
        if wanted:
            with (result.out_dir / name).open() as fh:
                yield from map(json.loads, fh)

    heartbeat = audit_heartbeat(result.sensor, result.summary)
    outcome = deliver(url, itertools.chain(
        audit_actions(result.alerts, result.asset_docs, result.edge_docs,
                      lines("events.ndjson", with_events), namespace, result.incident_docs,
                      lines("metrics.ndjson")),
        heartbeat_actions(heartbeat, namespace)), Spool())
    for err in outcome.errors[:3]:
        logging.getLogger("otsec").warning("search cluster: %s", printable(err))
    return {"delivered": outcome.delivered, "duplicates": outcome.duplicates,
            "spooled": outcome.spooled, "dropped": outcome.dropped,
            "dropped_by": outcome.dropped_by, "lost": outcome.lost,
            "dead_lettered": outcome.dead_lettered}


@cli.command()
@click.option("--es", "es_url", required=True, metavar="URL", callback=_search_url)
@click.option("--kibana", "kibana_url", default=None, metavar="URL", callback=_search_url,
              help="Also import the saved objects (data views, dashboard) into Kibana.")
def setup(es_url: str, kibana_url: str | None) -> int:
    """Install index templates, the lifecycle policy and the data streams' mappings."""
    from otsec.sinks.search import SearchError, connect
    from otsec.sinks.search import setup as install

    try:
        client, flavor = connect(es_url)
        notes = install(client, flavor)
    except SearchError as exc:
        raise click.ClickException(str(exc)) from None
    for note in notes:
        click.echo(f"{flavor}: {note}")
    if kibana_url:
        from otsec.sinks.kibana import import_objects

        try:
            result = import_objects(kibana_url)
        except SearchError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"kibana: imported {result.get('successCount', 0)} saved objects")
    return 0


@cli.command()
@click.option("--es", "es_url", required=True, metavar="URL", callback=_search_url)
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False), default=None,
              help="The spool to deliver [default: OTSEC_SPOOL_DIR, else the spool of "
                   "/var/lib/otsec as root, of ~/.local/state/otsec otherwise].")
def ship(es_url: str, spool_dir: str | None) -> int:
    """Deliver documents spooled while the cluster was unreachable (OTSEC_SPOOL_DIR)."""
    from otsec.sinks.search import Spool, deliver

    spool = Spool(Path(spool_dir) if spool_dir else None)
    _, flavor = _client(es_url)  # a wrong URL or unreadable secret: say so first
    spool.recover()  # files whose writer died are shipped too
    before = len(spool.files())
    outcome = deliver(es_url, [], spool, flavor)
    click.echo(f"delivered {outcome.delivered} ({outcome.duplicates} already there) from "
               f"{before} spool file(s); {len(spool.files())} left")
    if outcome.dead_lettered:
        click.echo(f"set aside {outcome.dead_lettered} that can never be delivered "
                   f"(reasons in {spool.dead_letter})")
    if spool.files():
        why = f": {printable(outcome.errors[0], 300)}" if outcome.errors else ""
        raise click.ClickException("the cluster did not take everything; the rest stays "
                                   f"spooled in {spool.dir}{why}")
    return 0


@cli.command()
@click.option("--es", "es_url", required=True, metavar="URL", callback=_search_url)
@click.option("--site", default=None, callback=_name, help="Only the sensors of this site.")
@click.option("--silent-after", type=click.FloatRange(min=0), default=180.0, show_default=True,
              help="Seconds without a heartbeat after which a running sensor is silent.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def sensors(es_url: str, site: str | None, silent_after: float, fmt: str) -> int:
    """The fleet: every sensor's newest heartbeat, and which went silent (exit 1 then)."""
    from otsec.health import silent
    from otsec.sinks.search import SearchError, find
    from otsec.timefmt import epoch

    client, flavor = _client(es_url)
    try:
        latest = find(client, flavor, "otsec-sensors-latest",
                      {"term": {"labels.site": site}} if site else {"match_all": {}})
    except SearchError as exc:
        raise click.ClickException(str(exc)) from None
    quiet = {id(d) for d in silent(latest, after=silent_after)}
    now = time.time()
    rows = []
    for d in sorted(latest, key=lambda d: (d["labels"]["site"], d["observer"]["name"])):
        s = d["otsec"]["sensor"]
        rows.append({"site": d["labels"]["site"], "sensor": d["observer"]["name"],
                     "mode": s.get("mode", ""), "state": "silent" if id(d) in quiet
                     else s["state"], "heartbeat": d["@timestamp"],
                     "age_s": round(now - epoch(d["@timestamp"]), 1),
                     "packets": s["packets"], "kernel_drops": s["kernel_drops"],
                     "spool_bytes": s["spool"]["bytes"], "version": s["version"]})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{len(rows)} sensors, {len(quiet)} silent")
        for col in ("site", "sensor", "mode", "state", "heartbeat", "age s", "packets",
                    "kernel drops", "spool bytes", "version"):
            table.add_column(col)
        for r in rows:
            table.add_row(*(shown(str(v)) for v in r.values()))
        Console(width=160).print(table)
    return 1 if quiet else 0


@cli.group()
def rules() -> None:
    """The rule catalogue: built-in rules/*.yaml plus your own."""


@rules.command("list")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path())
def rules_list(rule_paths: tuple[str, ...]) -> int:
    """One line per rule: id, severity, protocol, ATT&CK techniques, name."""
    from rich.table import Table

    from otsec.detect.ruleset import load

    rs = load([Path(p) for p in rule_paths])
    table = Table(title=f"{len(rs.rules)} rules")
    for col in ("id", "severity", "protocol", "techniques", "name"):
        table.add_column(col)
    for rid, c in sorted(rs.rules.items()):
        table.add_row(rid, c.rule.severity, c.rule.protocol, ", ".join(c.rule.techniques),
                      c.rule.name)
    from rich.console import Console

    Console(width=160).print(table)
    return 0


@rules.command("validate")
@click.argument("paths", nargs=-1, type=click.Path())
def rules_validate(paths: tuple[str, ...]) -> int:
    """Check rules files (the built-in ones and PATHS); errors name file and line."""
    from otsec.detect.ruleset import load

    rs = load([Path(p) for p in paths])
    click.echo(f"{len(rs.rules)} rules, {len(rs.suppress)} suppressions, "
               f"{len(rs.maintenance)} maintenance windows in {len(rs.files)} files: valid")
    return 0


@rules.command("explain")
@click.argument("rule_id")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path())
def rules_explain(rule_id: str, rule_paths: tuple[str, ...]) -> int:
    """Everything about one rule: meaning, ATT&CK mapping, what it matches, where it lives."""
    from otsec.detect.attack import TACTICS, TECHNIQUES, technique_url
    from otsec.detect.ruleset import load

    rs = load([Path(p) for p in rule_paths])
    c = rs.rules.get(rule_id)
    if c is None:
        raise UserError(f"no rule {rule_id!r} (see 'otsec rules list')")
    r = c.rule
    lines = [f"{r.id}: {r.name}", f"  {r.description}",
             f"  severity {r.severity}, category {r.category}, protocol {r.protocol}",
             "  techniques: " + "; ".join(f"{t} {TECHNIQUES[t][0]} ({technique_url(t)})"
                                          for t in r.techniques),
             "  tactics: " + "; ".join(f"{t} {TACTICS[t]}" for t in r.tactics),
             f"  reference: {r.reference}", f"  defined at {c.source}"]
    if c.kind == "baseline":
        lines.append("  raised by the baseline when protecting (quiet while learning)")
    elif c.kind == "sensor":
        lines.append("  raised by a live sensor about itself, from its heartbeat")
    elif c.kind == "counter":
        lines.append("  raised from the counts of connection attempts per 10 s window")
    for cond in c.conditions:
        value = sorted(cond.value) if isinstance(cond.value, frozenset) else cond.value
        lines.append(f"  match {cond.field} {cond.op} {value}")
    if c.threshold:
        t = c.threshold
        what = f"distinct {t.distinct}" if t.distinct else "matches"
        lines.append(f"  fires from {t.count} {what} per {t.by} within {t.window:g} s")
    click.echo("\n".join(lines))
    return 0


@cli.group()
def baseline() -> None:
    """Inspect and change a baseline."""


@baseline.command("show")
@click.argument("baseline_file", type=click.Path(dir_okay=False))
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Rows shown per table (0: all of them).")
@click.option("--grep", "pattern", default=None, metavar="TEXT",
              help="Only the assets and edges whose row contains TEXT.")
def baseline_show(baseline_file: str, limit: int, pattern: str | None) -> int:
    """Print the assets and edges a baseline holds (through a pager on a terminal)."""
    from rich.console import Console
    from rich.table import Table

    base = load_baseline(baseline_file)
    console = Console()

    def rows(items: Any, make: Any) -> tuple[list[tuple[str, ...]], int]:
        """The first ``limit`` rows that match, and how many match in all."""
        out, total = [], 0
        for item in items:
            row = make(*item)
            if pattern and not any(pattern in cell for cell in row):
                continue
            total += 1
            if not limit or len(out) < limit:
                out.append(row)
        return out, total

    def asset_row(ip: str, a: Any) -> tuple[str, ...]:
        ident = " / ".join(x for x in (a.manufacturer, a.model, a.firmware) if x)
        return ip, a.role, ", ".join(a.macs), ident

    def edge_row(key: str, e: Any) -> tuple[str, ...]:
        return (key, ", ".join(map(str, e.functions.get("request", []))),
                ", ".join(map(str, e.units)), f"{e.period:.2f}" if e.period else "",
                f"{e.rate:.3f}")

    tables = []
    for title, items, make, cols in (
            ("assets", sorted(base.assets.items()), asset_row,
             ("ip", "role", "MAC", "identity")),
            ("edges", sorted(base.edges.items()), edge_row,
             ("edge", "request functions", "units", "period s", "requests/s"))):
        shown_rows, total = rows(items, make)
        more = f", the first {len(shown_rows)} (--limit 0 for all)" \
            if len(shown_rows) < total else ""
        table = Table(title=f"{total} {title}{more}")
        for col in cols:
            table.add_column(col)
        for row in shown_rows:
            table.add_row(*map(shown, row))
        tables.append(table)
    if console.is_terminal:
        with console.pager(styles=True):
            console.print(*tables)
    else:
        console.print(*tables)
    return 0


@baseline.command("diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
def baseline_diff(old: str, new: str) -> int:
    """What changed between two baselines (exit 1 when they differ)."""
    from otsec.baseline.edit import diff

    lines = diff(load_baseline(old), load_baseline(new))
    for line in lines:
        click.echo(printable(line, 4096))
    return 1 if lines else 0


@baseline.command("publish")
@click.argument("baseline_file", type=click.Path(dir_okay=False))
@click.option("--es", "es_url", required=True, metavar="URL", callback=_search_url)
@click.option("--merge", is_flag=True,
              help="Fold this baseline into the site's current one instead of replacing it.")
@sensor_options
def baseline_publish(baseline_file: str, es_url: str, merge: bool, site: str,
                     sensor_name: str | None) -> int:
    """Make a baseline the site's shared one in the cluster (a new version of it)."""
    from otsec.baseline.shared import publish

    base = load_baseline(baseline_file)
    sensor = make_sensor(site, sensor_name)
    client, flavor = _client(es_url)
    version, shared = publish(client, flavor, base, sensor, merge=merge)
    click.echo(f"site {site}: baseline version {version} published ({len(shared.assets)} "
               f"assets, {len(shared.edges)} edges)")
    return 0


@baseline.command("fetch")
@click.argument("baseline_file", type=click.Path(dir_okay=False))
@click.option("--es", "es_url", required=True, metavar="URL", callback=_search_url)
@click.option("--site", envvar="OTSEC_SITE", default="default", show_default=True,
              callback=_name)
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="An earlier version [default: the current one].")
def baseline_fetch(baseline_file: str, es_url: str, site: str, version: int | None) -> int:
    """Save the site's shared baseline from the cluster to a file."""
    from otsec.baseline.shared import fetch

    client, _flavor = _client(es_url)
    got = fetch(client, site, version)
    if got is None:
        which = f"version {version}" if version else "baseline"
        raise UserError(f"site {site}: no {which} in the cluster (see 'baseline publish')")
    got.baseline.save(Path(baseline_file))
    click.echo(f"site {site}: baseline version {got.version} (published by {got.by} at "
               f"{got.at}) saved to {baseline_file}")
    return 0


def _client(es_url: str) -> tuple[Any, str]:
    from otsec.sinks.search import SearchError, SecretError, connect

    try:
        return connect(es_url)
    except SecretError as exc:
        raise UserError(str(exc)) from None
    except SearchError as exc:
        raise click.ClickException(str(exc)) from None


@baseline.command("approve")
@click.argument("alert_ids", nargs=-1, required=True)
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), required=True)
@click.option("--alerts", "alerts_file", type=click.Path(dir_okay=False),
              default="otsec-out/alerts.ndjson", show_default=True)
def baseline_approve(alert_ids: tuple[str, ...], baseline_file: str, alerts_file: str) -> int:
    """Learn what alerts found (ids, or prefixes only one alert has), so that planned change
    stops alerting."""
    from otsec.baseline.edit import approve, find_alerts

    base = load_baseline(baseline_file)
    for alert in find_alerts(Path(alerts_file), list(alert_ids)):
        for change in approve(base, alert):
            click.echo(f"learned {printable(change)}")
    base.save(Path(baseline_file))
    return 0


@contextlib.contextmanager
def progress_bar(what: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on a terminal (given bytes read so far); nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(what), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done: bar.update(task, completed=done)


def load_baseline(path: str, read: Callable[[Path], bytes] | None = None):
    from otsec.baseline.model import Baseline

    return Baseline.load(Path(path), read)


def parse_duration(text: str) -> float:
    """'90', '30s', '10m', '2h', '1d' -> seconds; a bad value is a usage error."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:])
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 10m, 2h or 1d",
                                 param_hint="--learn-for") from None
    if seconds < 0:
        raise click.BadParameter("a duration cannot be negative", param_hint="--learn-for")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Entry point: turns every failure into one line on stderr and an exit status."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="otsec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("otsec: interrupted", err=True)
        return 130
    except click.exceptions.ClickException as exc:
        message = " ".join(exc.format_message().split())
        click.echo(f"otsec: error: {message}", err=True)
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except (CaptureError, UserError, BaselineError, RuleError, PrivilegeError) as exc:
        click.echo(f"otsec: error: {exc}", err=True)
        return EXIT_USAGE
    except NothingAnalysed as exc:
        click.echo(f"otsec: error: {exc}", err=True)
        return EXIT_RUNTIME
    except OSError as exc:  # out of disk, --out under a file, a read-only folder ...
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"otsec: error: {exc.strerror or exc}{where}", err=True)
        return EXIT_RUNTIME
    except Exception as exc:
        if debug:
            raise
        click.echo(f"otsec: error: {type(exc).__name__}: {exc} (run with --debug for details)",
                   err=True)
        return EXIT_RUNTIME
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    sys.exit(main())
