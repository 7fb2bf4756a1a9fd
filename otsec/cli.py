"""Command line: parse flags, call the library, print. Nothing else lives here."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from otsec import __version__
from otsec.capture.files import CaptureError
from otsec.detect.catalog import SEVERITIES

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_ALERTS = 3


class UserError(Exception):
    """A mistake on the user's side: one line on stderr, exit 2."""


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
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(dir_okay=False))
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
def audit(pcaps: tuple[str, ...], out_dir: str, fmt: str, fail_on: str | None,
          max_flows: int, events: bool) -> int:
    """Audit capture files (pcap, pcapng, gzip of either) offline."""
    from otsec.audit import open_captures, run_audit
    from otsec.sinks.console import print_summary

    for p in pcaps:  # fail fast, before any output directory is made
        open_captures([p])[0].close()
    err = Console(stderr=True)
    total = sum(Path(p).stat().st_size for p in pcaps)
    with Progress(TextColumn("auditing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("audit", total=total)
        result = run_audit(list(pcaps), Path(out_dir),
                           progress=lambda done: bar.update(task, completed=done),
                           max_flows=max_flows, write_events=events)
    if fmt == "json":
        click.echo(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        print_summary(result, Console())
    if fail_on is not None:
        threshold = SEVERITIES[fail_on]
        if any(a["event"]["severity"] >= threshold for a in result.alerts):
            return EXIT_ALERTS
    return 0


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
    except (CaptureError, UserError) as exc:
        click.echo(f"otsec: error: {exc}", err=True)
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            raise
        click.echo(f"otsec: error: {type(exc).__name__}: {exc} (run with --debug for details)",
                   err=True)
        return EXIT_RUNTIME
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    sys.exit(main())
