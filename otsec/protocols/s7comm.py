"""Siemens S7comm and S7comm-plus: what functions, groups, areas and blocks mean (the
compiled core parses the bytes; see the README for what S7comm-plus V3 sessions hide)."""

from __future__ import annotations

PORT = 102
READ_VAR, WRITE_VAR = 0x04, 0x05
PI_SERVICE, PLC_STOP = 0x28, 0x29
DOWNLOAD = (0x1A, 0x1B, 0x1C)
UPLOAD = (0x1D, 0x1E, 0x1F)

FUNCTION_NAMES = {
    0x00: "CPU services", 0x04: "read var", 0x05: "write var", 0x1A: "request download",
    0x1B: "download block", 0x1C: "download ended", 0x1D: "start upload", 0x1E: "upload",
    0x1F: "end upload", 0x28: "PI service", 0x29: "PLC stop", 0xF0: "setup communication",
}  # fmt: skip
GROUP_NAMES = {
    0: "mode transition", 1: "programmer commands", 2: "cyclic data", 3: "block functions",
    4: "CPU functions", 5: "security", 6: "PBC BSEND/BRECV", 7: "time functions",
    15: "NC programming",
}  # fmt: skip
PLUS_FUNCTIONS = {
    0x04B1: "Error", 0x04BB: "Explore", 0x04CA: "CreateObject", 0x04D4: "DeleteObject",
    0x04F2: "SetVariable", 0x04FC: "GetVariable", 0x0506: "AddLink", 0x051A: "RemoveLink",
    0x0524: "GetLink", 0x0542: "SetMultiVariables", 0x054C: "GetMultiVariables",
    0x0556: "BeginSequence", 0x0560: "EndSequence", 0x056B: "Invoke",
    0x057C: "SetVarSubStreamed", 0x0586: "GetVarSubStreamed", 0x0590: "GetVariablesAddress",
    0x059A: "Abort", 0x05A9: "Error2", 0x05B3: "InitSsl",
}  # fmt: skip
