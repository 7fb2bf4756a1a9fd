"""DNP3 (IEEE 1815): what its application function codes mean (the compiled core parses
link frames, transport segments and object headers)."""

from __future__ import annotations

PORT = 20000

FUNCTION_NAMES = {
    0: "confirm", 1: "read", 2: "write", 3: "select", 4: "operate", 5: "direct operate",
    6: "direct operate no ack", 7: "immediate freeze", 8: "immediate freeze no ack",
    9: "freeze and clear", 10: "freeze and clear no ack", 11: "freeze at time",
    12: "freeze at time no ack", 13: "cold restart", 14: "warm restart",
    15: "initialize data", 16: "initialize application", 17: "start application",
    18: "stop application", 19: "save configuration", 20: "enable unsolicited",
    21: "disable unsolicited", 22: "assign class", 23: "delay measurement",
    24: "record current time", 25: "open file", 26: "close file", 27: "delete file",
    28: "get file info", 29: "authenticate file", 30: "abort file", 31: "activate config",
    32: "authenticate request", 33: "authenticate request no ack", 129: "response",
    130: "unsolicited response", 131: "authenticate response",
}  # fmt: skip
