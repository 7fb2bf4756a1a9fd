"""Real DNP3 peers (opendnp3 through yadnp3) for the sample captures.

An outstation (RTU) listening on 20000, a SCADA master polling it by class scans, an
intruder master that operates a relay, freezes counters and cold-restarts the RTU, and the
SCADA host itself turning insider.
Run inside the network namespaces made by scripts/make_samples.py.
"""

from __future__ import annotations

import time

import opendnp3 as o
from roles import run

OUTSTATION_ADDR = 10
MASTER_ADDR = 1


class Sink(o.ISOEHandler):
    def BeginFragment(self, info):
        pass

    def EndFragment(self, info):
        pass


class MasterApp(o.IMasterApplication):
    pass


class Commands(o.ICommandHandler):
    def Begin(self):
        pass

    def End(self):
        pass


class OutstationApp(o.IOutstationApplication):
    pass


class Listener(o.IChannelListener):
    pass


def manager() -> o.DNP3Manager:
    return o.DNP3Manager(1)


def outstation(bind: str) -> None:
    mgr = manager()
    channel = mgr.AddTCPServer("server", o.LogLevels.none(), o.ServerAcceptMode.CloseExisting,
                               o.IPEndpoint(bind, 20000), Listener())
    config = o.OutstationStackConfig(o.DatabaseConfig(10))
    config.link.LocalAddr = OUTSTATION_ADDR
    config.link.RemoteAddr = MASTER_ADDR
    station = channel.AddOutstation("rtu", Commands(), OutstationApp(), config)
    station.Enable()
    try:
        while True:
            time.sleep(1)
    finally:
        mgr.Shutdown()


def _master(server: str, name: str) -> tuple[o.DNP3Manager, o.IMaster]:
    mgr = manager()
    channel = mgr.AddTCPClient(name, o.LogLevels.none(), o.ChannelRetry.Default(),
                               [o.IPEndpoint(server, 20000)], "0.0.0.0", Listener())
    config = o.MasterStackConfig()
    config.link.LocalAddr = MASTER_ADDR
    config.link.RemoteAddr = OUTSTATION_ADDR
    config.master.responseTimeout = o.TimeDuration.Seconds(2)
    master = channel.AddMaster(name, Sink(), MasterApp(), config)
    return mgr, master


def scada(server: str, seconds: float, period: float) -> None:
    """Integrity poll at start-up, then class 1/2/3 event scans."""
    mgr, master = _master(server, "scada")
    master.AddClassScan(o.ClassField.AllEventClasses(), o.TimeDuration.Milliseconds(
        int(period * 1000)), Sink())
    try:
        master.Enable()
        time.sleep(seconds)
    finally:
        mgr.Shutdown()


def intruder(server: str) -> None:
    mgr, master = _master(server, "intruder")
    try:
        master.Enable()
        time.sleep(2)
        crob = o.ControlRelayOutputBlock(o.OperationType.LATCH_ON)
        master.DirectOperate(crob, 3, lambda result: None)
        time.sleep(0.5)
        master.SelectAndOperate(crob, 4, lambda result: None)
        time.sleep(0.5)
        master.Freeze(o.FreezeType.ImmediateFreeze, [o.Header.AllObjects(20, 0)])
        time.sleep(0.5)
        master.Restart(o.RestartType.COLD, lambda result: None)
        time.sleep(1)
    finally:
        mgr.Shutdown()


def insider(server: str) -> None:
    """The SCADA master's own host, well into a session: it disables unsolicited reporting
    (FC 21, which it only ever sends while starting up) and operates a relay."""
    mgr, master = _master(server, "scada")
    master.AddClassScan(o.ClassField.AllEventClasses(), o.TimeDuration.Milliseconds(500),
                        Sink())
    try:
        master.Enable()
        time.sleep(8)  # the start-up, then a dozen class scans
        master.PerformFunction("disable unsolicited", o.FunctionCode.DISABLE_UNSOLICITED,
                               [o.Header.AllObjects(60, v) for v in (2, 3, 4)])
        time.sleep(1)
        master.DirectOperate(o.ControlRelayOutputBlock(o.OperationType.LATCH_ON), 7,
                             lambda result: None)
        time.sleep(2)
    finally:
        mgr.Shutdown()


def main() -> None:
    run(outstation, scada, intruder, period=0.5, insider=insider)


if __name__ == "__main__":
    main()
