"""Real Modbus/TCP peers (pymodbus) for the sample captures: a PLC, an HMI, an intruder.

Run inside the network namespaces made by scripts/make_samples.py, e.g.
``python modbus_stack.py plc --bind 10.77.0.10``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from pymodbus import ModbusDeviceIdentification
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer
from roles import run


async def plc(bind: str) -> None:
    device = ModbusDeviceContext(
        di=ModbusSequentialDataBlock(1, [0] * 200),
        co=ModbusSequentialDataBlock(1, [0] * 200),
        hr=ModbusSequentialDataBlock(1, list(range(200))),
        ir=ModbusSequentialDataBlock(1, [100 + i for i in range(200)]),
    )
    identity = ModbusDeviceIdentification(
        info_name={
            "VendorName": "Schneider Electric",
            "ProductCode": "BMX P34 2020",
            "MajorMinorRevision": "3.20",
            "VendorUrl": "https://www.se.com",
            "ProductName": "Modicon M340",
            "ModelName": "BMX P34 2020",
        }
    )
    await StartAsyncTcpServer(ModbusServerContext(devices=device, single=True), identity=identity,
                              address=(bind, 502))


async def hmi(server: str, seconds: float, period: float) -> None:
    """Cyclic polling, as a SCADA master does: holding registers, coils, input registers;
    it goes on polling (reconnecting) when the PLC stops answering for a while."""
    client = AsyncModbusTcpClient(server, port=502, timeout=1, retries=0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if not client.connected:
                await client.connect()
            await client.read_holding_registers(0, count=10, device_id=1)
            await client.read_coils(0, count=16, device_id=1)
            await client.read_input_registers(0, count=8, device_id=1)
        except Exception:  # a hung PLC: polling goes on
            pass
        await asyncio.sleep(period)
    client.close()


async def intruder(server: str) -> None:
    """Reconnaissance, writes, diagnostics abuse and a function-code scan."""
    client = AsyncModbusTcpClient(server, port=502)
    await client.connect()
    await client.read_device_information(read_code=1, object_id=0, device_id=1)
    await client.report_device_id(device_id=1)
    await asyncio.sleep(0.5)
    await client.write_register(40, 9999, device_id=1)
    await client.write_registers(10, [1, 2, 3, 4], device_id=1)
    await client.write_coil(3, True, device_id=1)
    await asyncio.sleep(0.5)
    await client.diag_restart_communication(False, device_id=1)
    await asyncio.sleep(0.2)
    # force listen-only mode; the PLC is meant not to answer, so do not wait for one
    await client.diag_force_listen_only(device_id=1, no_response_expected=True)
    await asyncio.sleep(0.5)
    client.close()
    scan_function_codes(server, [9, 10, 13, 14, 18, 19, 25, 26, 27, 41, 100, 125])


async def insider(server: str) -> None:
    """Steps from the HMI's own host (known to the baseline): a write of a register range it
    never wrote, then a slow sweep of unit ids (one request every second)."""
    client = AsyncModbusTcpClient(server, port=502)
    await client.connect()
    await client.write_registers(150, [950, 951], device_id=1)
    await asyncio.sleep(1.0)
    for unit in range(2, 10):
        await client.read_holding_registers(0, count=2, device_id=unit)
        await asyncio.sleep(1.0)
    client.close()


SETPOINT = 20  # the holding register an operator adjusts (a temperature setpoint, say)


def setpoint(i: int) -> int:
    """The operator's adjustments: every value from 40 to 60, in a scrambled order."""
    return 40 + (i * 8) % 21


async def operator(server: str, seconds: float, period: float) -> None:
    """An HMI that polls and adjusts the setpoint within its usual range every cycle; it
    keeps polling when the PLC stops answering (short timeouts, reconnecting)."""
    client = AsyncModbusTcpClient(server, port=502, timeout=1, retries=0)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        try:
            if not client.connected:
                await client.connect()
            await client.read_holding_registers(0, count=30, device_id=1)
            await client.write_register(SETPOINT, setpoint(i), device_id=1)
        except Exception:  # a hung PLC: polling goes on
            pass
        i += 1
        await asyncio.sleep(period)
    client.close()


async def tamper(server: str) -> None:
    """From the operator's own host: the setpoint written far outside its usual range."""
    client = AsyncModbusTcpClient(server, port=502)
    await client.connect()
    await client.write_register(SETPOINT, 950, device_id=1)
    client.close()


def scan_function_codes(server: str, codes: list[int]) -> None:
    """What scanners (nmap modbus-discover, smod) do: one raw request per function code."""
    with socket.create_connection((server, 502), timeout=3) as sock:
        for tid, fc in enumerate(codes, start=100):
            sock.sendall(struct.pack("!HHHBB", tid, 0, 2, 1, fc))
            try:
                sock.recv(260)
            except TimeoutError:
                break
            time.sleep(0.05)


def main() -> None:
    run(lambda bind: asyncio.run(plc(bind)),
        lambda server, seconds, period: asyncio.run(hmi(server, seconds, period)),
        lambda server: asyncio.run(intruder(server)), period=0.5,
        insider=lambda server: asyncio.run(insider(server)),
        operator=lambda server, seconds, period: asyncio.run(operator(server, seconds, period)),
        tamper=lambda server: asyncio.run(tamper(server)))


if __name__ == "__main__":
    main()
