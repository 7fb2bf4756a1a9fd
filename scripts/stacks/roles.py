"""The command line every stack script shares: which role to play, where, for how long."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable


def run(plc: Callable[[str], None], hmi: Callable[[str, float, float], None],
        intruder: Callable[[str], None], period: float = 0.5,
        insider: Callable[[str], None] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["plc", "hmi", "intruder"] + (["insider"] if insider
                                                                  else []))
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--server", default="127.0.0.1")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--period", type=float, default=period)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.role == "plc":
        plc(args.bind)
    elif args.role == "hmi":
        hmi(args.server, args.seconds, args.period)
    elif args.role == "insider" and insider is not None:
        insider(args.server)
    else:
        intruder(args.server)
