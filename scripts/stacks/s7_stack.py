"""Real S7comm peers (python-snap7) for the sample captures: a PLC, an HMI, an intruder.

Run inside the network namespaces made by scripts/make_samples.py.
"""

from __future__ import annotations

import contextlib
import time

import snap7
from roles import run
from snap7.server import Server
from snap7.type import SrvArea


def plc(bind: str) -> None:
    server = Server(log=False)
    server.register_area(SrvArea.DB, 1, bytearray(range(64)))
    server.register_area(SrvArea.MK, 0, bytearray(32))
    server.register_area(SrvArea.PA, 0, bytearray(16))
    server.start_to(bind, 102)
    try:
        while True:
            time.sleep(1)
    finally:
        server.stop()


def hmi(server: str, seconds: float, period: float) -> None:
    """Cyclic reads of a data block and the flags, as a panel does."""
    client = snap7.Client()
    client.connect(server, 0, 1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        client.db_read(1, 0, 16)
        client.mb_read(0, 8)
        time.sleep(period)
    client.disconnect()


def intruder(server: str) -> None:
    """Identification, a forced write, a program upload attempt and a PLC stop."""
    client = snap7.Client()
    client.connect(server, 0, 1)
    client.get_order_code()  # SZL 0x0011
    client.get_cpu_info()  # SZL 0x001C
    time.sleep(0.3)
    client.db_write(1, 10, bytearray([0xDE, 0xAD]))
    client.mb_write(4, 1, bytearray([0xFF]))
    time.sleep(0.3)
    with contextlib.suppress(Exception):  # the simulator may not hold the block
        client.upload(1)
    time.sleep(0.3)
    client.plc_stop()
    time.sleep(0.3)
    client.plc_hot_start()
    client.disconnect()


def main() -> None:
    run(plc, hmi, intruder, period=0.5)


if __name__ == "__main__":
    main()
