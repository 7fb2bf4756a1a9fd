"""The command line every stack script shares: which role to play, where, for how long."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

Timed = Callable[[str, float, float], None]  # (server, seconds, period)
Once = Callable[[str], None]  # (server)


def run(plc: Callable[[str], None], hmi: Timed, intruder: Once, period: float = 0.5,
        insider: Once | None = None, operator: Timed | None = None,
        tamper: Once | None = None) -> None:
    """``operator``: an HMI that polls and writes setpoints within their usual range;
    ``tamper``: one write far outside it, from the same host."""
    timed = {"hmi": hmi, **({"operator": operator} if operator else {})}
    once = {"intruder": intruder, **({"insider": insider} if insider else {}),
            **({"tamper": tamper} if tamper else {})}
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["plc", *timed, *once])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--server", default="127.0.0.1")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--period", type=float, default=period)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.role == "plc":
        plc(args.bind)
    elif args.role in timed:
        timed[args.role](args.server, args.seconds, args.period)
    else:
        once[args.role](args.server)
