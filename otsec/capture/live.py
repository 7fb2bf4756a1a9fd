"""Live, receive-only capture from a mirror port: an AF_PACKET TPACKET_V3 ring (mmap).

The socket is never written to. Packets arrive in blocks the kernel fills; each retired
block is copied out, handed back to the kernel, and walked by the compiled core (which
puts back the VLAN tags the kernel stripped into the ring's metadata). A classic BPF
filter (compiled by tcpdump when installed) keeps the kernel from copying traffic otsec
does not need.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

from otsec.capture import CaptureError
from otsec.protocols import capture_filter

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

#: the OT protocols, and what the inventory needs beside them
DEFAULT_FILTER = capture_filter()



def compile_filter(expression: str, iface: str) -> bytes | None:
    """Classic BPF bytecode for ``expression`` (via ``tcpdump -dd``), or None without it."""
    tcpdump = shutil.which("tcpdump")
    if not tcpdump or not expression:
        return None
    proc = subprocess.run([tcpdump, "-i", iface, "-dd", expression], capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise CaptureError(f"bad filter {expression!r}: {proc.stderr.strip().splitlines()[-1]}")
    insns = []
    for line in proc.stdout.splitlines():
        code, jt, jf, k = (int(x, 0) for x in line.strip().strip("{},").split(","))
        insns.append(struct.pack("HBBI", code, jt, jf, k))
    return b"".join(insns)


class LiveCapture:
    """Iterate packets of one interface as ``(ts, linktype, buf, start, caplen, wirelen)``."""

    def __init__(self, iface: str, bpf: str | None = DEFAULT_FILTER, promiscuous: bool = True,
                 block_size: int = 1 << 22, blocks: int = 64, fanout: int | None = None) -> None:
        self.iface = iface
        self.running = True
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise CaptureError("capturing needs root or CAP_NET_RAW") from None
        self.sock = sock
        try:
            index = socket.if_nametoindex(iface)
        except OSError:
            sock.close()
            raise CaptureError(f"no such interface: {iface}") from None
        code = compile_filter(bpf or "", iface)
        if code is not None:
            self._filter = ctypes.create_string_buffer(code, len(code))
            prog = struct.pack("HL", len(code) // 8, ctypes.addressof(self._filter))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frame = 1 << 11
        req = struct.pack("IIIIIII", block_size, blocks, frame, block_size * blocks // frame,
                          100, 0, 0)  # retire a block after 100 ms even when not full
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.ring = mmap.mmap(sock.fileno(), block_size * blocks, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self.block_size, self.blocks = block_size, blocks
        sock.bind((iface, ETH_P_ALL))
        if promiscuous:
            mreq = struct.pack("IHH8s", index, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if fanout is not None:  # PACKET_FANOUT = 18, hash mode 0: both directions, one worker
            sock.setsockopt(SOL_PACKET, 18, (fanout & 0xFFFF))
        self.packets = 0
        self.drops = 0
        self._error = 0

    def stats(self) -> tuple[int, int]:
        """(packets, drops) the kernel counted since the last call (they reset on read)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        received, dropped, _freeze = struct.unpack("III", raw)
        self.drops += dropped
        return received, dropped

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        self.ring.close()
        self.sock.close()

    def _wait(self, poller: select.poll) -> bool:
        """Wait up to 200 ms for a block; False when none came. An error on the socket
        (the interface went down) is read and waited out, not spun on."""
        events = poller.poll(200)
        if events and events[0][1] & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err and err != self._error:
                log.warning("%s: %s", self.iface, os.strerror(err))
            self._error = err
            time.sleep(0.2)
            return False
        return bool(events)

    def _oldest_filled(self) -> int | None:
        """The filled block the kernel handed over first (None: none filled yet); the
        kernel fills the ring in order, so reading goes on from there."""
        filled = [(struct.unpack_from("=Q", self.ring, i * self.block_size + 24)[0], i)
                  for i in range(self.blocks)
                  if struct.unpack_from("=I", self.ring, i * self.block_size + 8)[0]
                  & TP_STATUS_USER]
        return min(filled)[1] if filled else None

    def __iter__(self) -> Iterator[bytes | None]:
        """Retired blocks, and None whenever 200 ms pass without one (for housekeeping)."""
        ring, bs = self.ring, self.block_size
        block = None
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        while self.running:
            if block is None:  # where the kernel is (a restarted worker takes over a ring)
                block = self._oldest_filled()
                if block is None:
                    if not self._wait(poller):
                        yield None
                    continue
            base = block * bs
            status = struct.unpack_from("=I", ring, base + 8)[0]
            if not status & TP_STATUS_USER:
                if not self._wait(poller):
                    yield None
                continue
            used = struct.unpack_from("=I", ring, base + 20)[0]  # blk_len
            data = ring[base : base + min(max(used, 48), bs)]
            struct.pack_into("=I", ring, base + 8, TP_STATUS_KERNEL)
            block = (block + 1) % self.blocks
            yield data
