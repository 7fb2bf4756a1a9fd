"""Modbus/TCP: what its function codes mean (the compiled core parses the bytes)."""

from __future__ import annotations

PORT = 502
MBAP_LEN = 7
MAX_LENGTH = 254  # unit id + a PDU of at most 253 bytes
OVERSIZE_LENGTH = 2048  # longer frames (some UMAS stacks) are parsed but flagged
MAX_PENDING = 512  # outstanding requests kept per connection
MAX_BUFFER = 4096  # bytes kept while looking for a header

PUBLIC_FUNCTIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43})
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 21, 22, 23})
UMAS = 90
PROGRAMMING_FUNCTIONS = frozenset({40, 41, 42, 125, 126})
#: functions accepted when recognising Modbus by content on a non-standard port
PROBE_FUNCTIONS = PUBLIC_FUNCTIONS | {UMAS} | PROGRAMMING_FUNCTIONS

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
