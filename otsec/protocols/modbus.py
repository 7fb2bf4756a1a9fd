"""Modbus/TCP: what its function codes mean (the compiled core parses the bytes)."""

from __future__ import annotations

PORT = 502
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 21, 22, 23})
UMAS = 90
PROGRAMMING_FUNCTIONS = frozenset({40, 41, 42, 125, 126})

FUNCTION_NAMES = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    7: "read exception status",
    8: "diagnostics",
    11: "get comm event counter",
    12: "get comm event log",
    15: "write multiple coils",
    16: "write multiple registers",
    17: "report server id",
    20: "read file record",
    21: "write file record",
    22: "mask write register",
    23: "read/write multiple registers",
    24: "read FIFO queue",
    43: "encapsulated interface transport",
    90: "UMAS",
}
