"""Damaged captures for tests: mutations of a pcap or pcapng file's headers, timestamp
options and blocks (what disks, copies and broken writers do to them). Each mutation keeps
the packets' bytes; the reader must read every packet that Wireshark reads."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
               b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}


@dataclass
class Block:
    """One pcapng block: its type and body (between the lengths), in the section's order."""

    btype: int
    body: bytes


def pcapng_blocks(data: bytes) -> tuple[str, list[Block]]:
    """The blocks of an intact pcapng file (one byte order: that of its first section)."""
    o = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    out, at = [], 0
    while at + 12 <= len(data):
        btype, n = struct.unpack_from(o + "II", data, at)
        if n < 12 or at + n > len(data):
            break
        out.append(Block(btype, data[at + 8:at + n - 4]))
        at += n
    return o, out


def block_bytes(o: str, b: Block, trailer: int | None = None) -> bytes:
    body = b.body + b"\0" * (-len(b.body) % 4)
    n = len(body) + 12
    return struct.pack(o + "II", b.btype, n) + body + struct.pack(
        o + "I", n if trailer is None else trailer)


def pcapng_bytes(o: str, blocks: list[Block]) -> bytes:
    return b"".join(block_bytes(o, b) for b in blocks)


def options(o: str, raw: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at + 4 <= len(raw):
        code, n = struct.unpack_from(o + "HH", raw, at)
        if code == 0:
            break
        out.append((code, raw[at + 4:at + 4 + n]))
        at += 4 + n + (-n % 4)
    return out


def options_bytes(o: str, opts: list[tuple[int, bytes]]) -> bytes:
    raw = b"".join(struct.pack(o + "HH", c, len(v)) + v + b"\0" * (-len(v) % 4)
                   for c, v in opts)
    return raw + struct.pack(o + "HH", 0, 0) if opts else raw


def with_idb_options(o: str, b: Block, change: dict[int, bytes | None]) -> Block:
    """An interface block whose options `change` sets (or removes, None)."""
    opts = [(c, v) for c, v in options(o, b.body[8:]) if c not in change]
    opts += [(c, v) for c, v in change.items() if v is not None]
    return Block(1, b.body[:8] + options_bytes(o, opts))


def first(blocks: list[Block], btype: int) -> int:
    return next(i for i, b in enumerate(blocks) if b.btype == btype)


def packet_blocks(blocks: list[Block]) -> list[int]:
    return [i for i, b in enumerate(blocks) if b.btype in (2, 3, 6)]


def to_pcapng(data: bytes) -> bytes:
    """A pcap file as pcapng: one interface, microseconds, the same records."""
    o = PCAP_MAGICS[data[:4]]
    nanos = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(o + "I", data, 20)[0] & 0xFFFF
    blocks = [Block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
              Block(1, struct.pack("<HHI", linktype, 0, 262144))]
    at = 24
    while at + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(o + "IIII", data, at)
        if at + 16 + incl > len(data):
            break
        t = sec * 1_000_000 + (frac // 1000 if nanos else frac)
        blocks.append(Block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, incl, orig)
                            + data[at + 16:at + 16 + incl]))
        at += 16 + incl
    return pcapng_bytes("<", blocks)


Mutation = Callable[[bytes, random.Random], bytes]
PCAPNG: dict[str, Mutation] = {}
PCAP: dict[str, Mutation] = {}


def pcapng_mutation(name: str) -> Callable[[Callable[[str, list[Block], random.Random], None]],
                                            None]:
    """Register a mutation of the block list (changed in place)."""

    def register(f: Callable[[str, list[Block], random.Random], None]) -> None:
        def mutate(data: bytes, rng: random.Random) -> bytes:
            o, blocks = pcapng_blocks(data)
            f(o, blocks, rng)
            return pcapng_bytes(o, blocks)

        PCAPNG[name] = mutate

    return register


def _tsresol(value: int) -> Callable[[str, list[Block], random.Random], None]:
    def f(o: str, blocks: list[Block], rng: random.Random) -> None:
        i = first(blocks, 1)
        blocks[i] = with_idb_options(o, blocks[i], {9: bytes([value])})
    return f


for _name, _value in (("tsresol-0", 0), ("tsresol-10^-30", 30), ("tsresol-10^-127", 127),
                      ("tsresol-2^-127", 0xFF), ("tsresol-2^0", 0x80), ("tsresol-10^-19", 19)):
    pcapng_mutation(_name)(_tsresol(_value))


def _tsoffset(value: int) -> Callable[[str, list[Block], random.Random], None]:
    def f(o: str, blocks: list[Block], rng: random.Random) -> None:
        i = first(blocks, 1)
        blocks[i] = with_idb_options(o, blocks[i], {14: struct.pack(o + "q", value)})
    return f


for _name, _value in (("tsoffset-negative", -2_000_000_000), ("tsoffset--2^63", -(2 ** 63)),
                      ("tsoffset-huge", 2 ** 62), ("tsoffset-minus-1", -1)):
    pcapng_mutation(_name)(_tsoffset(_value))


@pcapng_mutation("tsoffset-short")
def _tsoffset_short(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = first(blocks, 1)
    blocks[i] = with_idb_options(o, blocks[i], {14: b"\xff\xff\xff"})


@pcapng_mutation("tsresol-long")
def _tsresol_long(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = first(blocks, 1)
    blocks[i] = with_idb_options(o, blocks[i], {9: b"\x06\x09\x03"})


@pcapng_mutation("epb-ts-absurd")
def _epb_ts(o: str, blocks: list[Block], rng: random.Random) -> None:
    for i in rng.sample(packet_blocks(blocks), min(3, len(packet_blocks(blocks)))):
        b = blocks[i]
        if b.btype == 6:
            body = bytearray(b.body)
            struct.pack_into(o + "I", body, 4, 0xFFFFFFFF)
            blocks[i] = Block(6, bytes(body))


@pcapng_mutation("epb-ts-zero")
def _epb_ts_zero(o: str, blocks: list[Block], rng: random.Random) -> None:
    for i in packet_blocks(blocks)[::2]:
        body = bytearray(blocks[i].body)
        if blocks[i].btype == 6:
            struct.pack_into(o + "II", body, 4, 0, 0)
            blocks[i] = Block(6, bytes(body))


@pcapng_mutation("shb-section-length")
def _shb_length(o: str, blocks: list[Block], rng: random.Random) -> None:
    body = bytearray(blocks[0].body)
    struct.pack_into(o + "q", body, 8, rng.randrange(-2 ** 63, 2 ** 63))
    blocks[0] = Block(blocks[0].btype, bytes(body))


@pcapng_mutation("shb-minor-version")
def _shb_minor(o: str, blocks: list[Block], rng: random.Random) -> None:
    body = bytearray(blocks[0].body)
    struct.pack_into(o + "H", body, 6, 7)
    blocks[0] = Block(blocks[0].btype, bytes(body))


@pcapng_mutation("shb-options-garbage")
def _shb_options(o: str, blocks: list[Block], rng: random.Random) -> None:
    blocks[0] = Block(blocks[0].btype, blocks[0].body[:16] + options_bytes(
        o, [(2, b"\xff" * 13), (0x2bac, b"x" * 5)]))


@pcapng_mutation("idb-snaplen-0")
def _idb_snaplen(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = first(blocks, 1)
    body = bytearray(blocks[i].body)
    struct.pack_into(o + "I", body, 4, 0)
    blocks[i] = Block(1, bytes(body))


@pcapng_mutation("idb-snaplen-small")
def _idb_snaplen_small(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = first(blocks, 1)
    body = bytearray(blocks[i].body)
    struct.pack_into(o + "I", body, 4, 20)
    blocks[i] = Block(1, bytes(body))


@pcapng_mutation("idb-reserved")
def _idb_reserved(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = first(blocks, 1)
    body = bytearray(blocks[i].body)
    struct.pack_into(o + "H", body, 2, 0xBEEF)
    blocks[i] = Block(1, bytes(body))


@pcapng_mutation("idb-options-garbage")
def _idb_options(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = first(blocks, 1)
    body = blocks[i].body[:8] + struct.pack(o + "HH", 2, 0xFFF0) + b"eth0"
    blocks[i] = Block(1, body)


@pcapng_mutation("unknown-blocks")
def _unknown(o: str, blocks: list[Block], rng: random.Random) -> None:
    for i in sorted(rng.sample(range(2, len(blocks) + 1), min(5, len(blocks) - 1)),
                    reverse=True):
        # (not custom blocks, 0xBAD: Wireshark shows those as records of their own)
        blocks.insert(i, Block(rng.choice([0xBEEF, 7, 8, 0x80000001, 0x0BAE]),
                               bytes(rng.randrange(256) for _ in range(rng.randrange(40)))))


@pcapng_mutation("block-type-flipped")
def _type_flipped(o: str, blocks: list[Block], rng: random.Random) -> None:
    for i in rng.sample(packet_blocks(blocks), min(3, len(packet_blocks(blocks)))):
        blocks[i] = Block(blocks[i].btype ^ 0x00100000, blocks[i].body)


@pcapng_mutation("epb-caplen-past-block")
def _caplen(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = rng.choice(packet_blocks(blocks))
    if blocks[i].btype == 6:
        body = bytearray(blocks[i].body)
        struct.pack_into(o + "I", body, 12, len(body) + 100)
        blocks[i] = Block(6, bytes(body))


@pcapng_mutation("epb-wirelen-small")
def _wirelen(o: str, blocks: list[Block], rng: random.Random) -> None:
    for i in packet_blocks(blocks)[::3]:
        if blocks[i].btype == 6:
            body = bytearray(blocks[i].body)
            struct.pack_into(o + "I", body, 16, 1)
            blocks[i] = Block(6, bytes(body))


@pcapng_mutation("epb-bad-interface")
def _bad_iface(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = rng.choice(packet_blocks(blocks))
    if blocks[i].btype == 6:
        body = bytearray(blocks[i].body)
        struct.pack_into(o + "I", body, 0, 99)
        blocks[i] = Block(6, bytes(body))


@pcapng_mutation("epb-empty")
def _epb_empty(o: str, blocks: list[Block], rng: random.Random) -> None:
    i = rng.choice(packet_blocks(blocks))
    if blocks[i].btype == 6:
        body = bytearray(blocks[i].body[:20])
        struct.pack_into(o + "II", body, 12, 0, 0)
        blocks[i] = Block(6, bytes(body))


@pcapng_mutation("epb-options-garbage")
def _epb_options(o: str, blocks: list[Block], rng: random.Random) -> None:
    for i in packet_blocks(blocks)[::4]:
        b = blocks[i]
        if b.btype == 6:
            caplen = struct.unpack_from(o + "I", b.body, 12)[0]
            end = 20 + caplen + (-caplen % 4)
            blocks[i] = Block(6, b.body[:end] + struct.pack(o + "HH", 1, 0x7777) + b"oops")


def _trailer(o: str, blocks: list[Block], rng: random.Random) -> bytes:
    i = rng.choice(packet_blocks(blocks))
    return b"".join(block_bytes(o, b, trailer=0xDEAD if j == i else None)
                    for j, b in enumerate(blocks))


PCAPNG["block-trailer-mismatch"] = lambda data, rng: _trailer(*pcapng_blocks(data), rng)


def _lengths(o: str, blocks: list[Block], rng: random.Random,
             length: Callable[[int], int]) -> bytes:
    """One packet block's leading length changed (its trailing copy stands)."""
    i = rng.choice(packet_blocks(blocks))
    out = []
    for j, b in enumerate(blocks):
        raw = bytearray(block_bytes(o, b))
        if j == i:
            struct.pack_into(o + "I", raw, 4, length(len(raw)))
        out.append(bytes(raw))
    return b"".join(out)


PCAPNG["block-length-odd"] = lambda data, rng: _lengths(
    *pcapng_blocks(data), rng, lambda n: n + 1)
PCAPNG["block-length-huge"] = lambda data, rng: _lengths(
    *pcapng_blocks(data), rng, lambda n: 0x7FFFFFF0)
PCAPNG["block-length-short"] = lambda data, rng: _lengths(
    *pcapng_blocks(data), rng, lambda n: 8)


def _garbage(o: str, blocks: list[Block], rng: random.Random) -> bytes:
    """Bytes of no block (an odd number of them) between some blocks."""
    chosen = set(rng.sample(packet_blocks(blocks), min(2, len(packet_blocks(blocks)))))
    return b"".join(block_bytes(o, b) + (bytes(rng.randrange(256) for _ in range(37))
                                         if i in chosen else b"")
                    for i, b in enumerate(blocks))


PCAPNG["garbage-between-blocks"] = lambda data, rng: _garbage(*pcapng_blocks(data), rng)


def _pcap_header(offset: int, fmt: str, value: int) -> Mutation:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        o = PCAP_MAGICS[data[:4]]
        out = bytearray(data)
        struct.pack_into(o + fmt, out, offset, value)
        return bytes(out)
    return mutate


PCAP.update({
    "version-major-9": _pcap_header(4, "H", 9),
    "version-minor-9": _pcap_header(6, "H", 9),
    "version-0.0": _pcap_header(4, "I", 0),
    "thiszone": _pcap_header(8, "i", -3600 * 5),
    "sigfigs": _pcap_header(12, "I", 0xDEADBEEF),
    "snaplen-0": _pcap_header(16, "I", 0),
    "snaplen-small": _pcap_header(16, "I", 20),
    "snaplen-huge": _pcap_header(16, "I", 0xFFFFFFFF),
    "linktype-fcs-bits": _pcap_header(20, "I", 0x14000001),
})


def _records(data: bytes) -> Iterator[int]:
    o, at = PCAP_MAGICS[data[:4]], 24
    while at + 16 <= len(data):
        incl = struct.unpack_from(o + "I", data, at + 8)[0]
        if at + 16 + incl > len(data):
            return
        yield at
        at += 16 + incl


def _pcap_records(every: int, offset: int, fmt: str, value: Callable[[int], int]) -> Mutation:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        o = PCAP_MAGICS[data[:4]]
        out = bytearray(data)
        for at in list(_records(data))[1::every]:
            old = struct.unpack_from(o + fmt, data, at + offset)[0]
            struct.pack_into(o + fmt, out, at + offset, value(old))
        return bytes(out)
    return mutate


PCAP.update({
    "record-usec-overflow": _pcap_records(5, 4, "I", lambda _: 0xFFFFFFFF),
    "record-sec-max": _pcap_records(7, 0, "I", lambda _: 0xFFFFFFFF),
    "record-sec-zero": _pcap_records(3, 0, "I", lambda _: 0),
    "record-wirelen-small": _pcap_records(4, 12, "I", lambda _: 1),
    "record-wirelen-huge": _pcap_records(4, 12, "I", lambda _: 0xFFFFFFF0),
})


@dataclass
class _Empty:
    """Records cut to nothing (caplen 0), their bytes gone: Wireshark reads them."""

    def __call__(self, data: bytes, rng: random.Random) -> bytes:
        o = PCAP_MAGICS[data[:4]]
        records = list(_records(data))
        chosen = set(rng.sample(records[1:], min(3, len(records) - 1)))
        out, last = [data[:24]], 24
        for at in records:
            incl = struct.unpack_from(o + "I", data, at + 8)[0]
            if at in chosen:
                out.append(data[at:at + 8] + struct.pack(o + "II", 0, 0))
            else:
                out.append(data[at:at + 16 + incl])
            last = at + 16 + incl
        out.append(data[last:])
        return b"".join(out)


PCAP["record-empty"] = _Empty()
PCAP["record-caplen-huge"] = _pcap_records(50, 8, "I", lambda _: 0x7FFFFFFF)


def _pcap_garbage(data: bytes, rng: random.Random) -> bytes:
    """Bytes of no record (an odd number of them) before some records."""
    records = list(_records(data))
    chosen = set(rng.sample(records[1:], min(2, len(records) - 1)))
    out, last = [data[:24]], 24
    for at in records:
        if at in chosen:
            out.append(data[last:at] + bytes(rng.randrange(256) for _ in range(37)))
            last = at
    out.append(data[last:])
    return b"".join(out)


PCAP["garbage-between-records"] = _pcap_garbage


def damaged(data: bytes, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """Every mutation of a capture (a pcap file also as pcapng, mutated as that)."""
    rng = random.Random(seed)
    if data[:4] in PCAP_MAGICS:
        for name, m in PCAP.items():
            yield f"pcap:{name}", m(data, rng)
        data = to_pcapng(data)
    for name, m in PCAPNG.items():
        yield f"pcapng:{name}", m(data, rng)
