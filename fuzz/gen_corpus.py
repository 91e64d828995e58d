#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""gen_corpus.py - writes the seed corpus of the fuzz targets.

    python3 fuzz/gen_corpus.py [OUTDIR]      (default: fuzz/corpus)

Writes OUTDIR/request/* (inputs of fuzz_request.c: every window operation,
every kind of page, valid and invalid pool flags, hostile slots, both
clients, each setup bit), OUTDIR/hello/* (inputs of fuzz_hello.c) and
OUTDIR/ctl/* (control requests of every op, valid and not: fuzz_ctl.c).
Files are named by the SHA-1 of their contents, as libFuzzer names them, so
that running this again over a corpus adds nothing twice.  The input
format is documented in fuzz_request.c and docs/fuzzing.md.
"""
import hashlib
import os
import struct
import sys

# ---- wire.h ----------------------------------------------------------------
TMW_MAGIC, TMW_VERSION = 0x544D454D, 1
TMW_CTL_VERSION = 3                          # the control socket's messages
POSTED, FREE, DONE = 1, 0, 2
PUT, GET, FLUSH_PAGE, FLUSH_OBJECT, NEW_POOL, DESTROY_POOL, IS_SHARED = range(1, 8)
MSG_HELLO, MSG_HELLO_REPLY, MSG_CTL = 1, 2, 3
NAME_MAX = 64

# ---- tmem.h pool flags ---------------------------------------------------------
PERSIST, SHARED, KEEP = 0x1, 0x2, 0x8
VERSION1 = 1 << 24

# ---- fuzz_request.c -----------------------------------------------------------
SEED, PRNG, RAW, KEEPPAGE = 0, 1, 2, 3
KEEP_STATE, CLIENT_B, REPEAT, EVICT, NOISE = 0x04, 0x08, 0x10, 0x20, 0x40
S_ENGINE1, S_CAP_A, S_FREEZE_A, S_FREEZE_B, S_FAULT, S_FAULT_ALL = 0x01, 0x08, 0x10, 0x20, 0x40, 0x80
def S_CODEC(c): return (c + 1) << 1          # 0 none, 1 lz4, 2 zstd
U1 = (0x1111111111111111, 0x2222222222222222)
U2 = (0x3333333333333333, 0x4444444444444444)
# initial pools: client A 0 eph, 1 pers, 2 shared U1, 3 eph keep; B 0 shared U1, 1 pers
A_EPH, A_PERS, A_SHARED, A_KEEP = 0, 1, 2, 3
B_SHARED, B_PERS = 0, 1


def slot(op, pool=0, index=0, arg=0, oid=(1, 2, 3), state=POSTED, waiter=0, result=0):
    return struct.pack("<IIIIII3Qi3I", state, waiter, op, pool, index, arg,
                       *oid, result, 0, 0, 0)


def rec(op, pool=0, index=0, arg=0, oid=(1, 2, 3), page=(SEED, b""), count=None,
        b=False, evict=False, state=None, waiter=0, noise=None):
    """One record; page = (SEED, pattern) | (PRNG, seed) | (RAW, bytes) | (KEEPPAGE,);
    noise = N: the first 16 * N bytes of the page are pseudo-random."""
    mode = page[0]
    ctl = mode | (CLIENT_B if b else 0) | (EVICT if evict else 0) | (NOISE if noise else 0)
    if state is not None:
        ctl |= KEEP_STATE
    out = bytearray()
    if count is not None:
        ctl |= REPEAT
    out.append(ctl)
    if count is not None:
        out.append(count - 1)
    out += slot(op, pool, index, arg, oid, POSTED if state is None else state, waiter)
    if mode == SEED:
        out.append(len(page[1]))
        out += page[1]
    elif mode == PRNG:
        out += struct.pack("<Q", page[1])
    elif mode == RAW:
        out += page[1].ljust(4096, b"\0")[:4096]
    if noise:
        out.append(noise)
    return bytes(out)


def inp(setup, *records):
    return bytes([setup]) + b"".join(records)


def new_pool(flags, uuid=(0, 0), b=False):
    return rec(NEW_POOL, arg=flags, oid=(uuid[0], uuid[1], 0), b=b)


ZERO = (SEED, b"")
BYTE = (SEED, b"\xab")
WORD = (SEED, struct.pack("<Q", 0x0123456789ABCDEF))
TEXT = (SEED, b"transcendent memory, page by page. ")
def RND(n): return (PRNG, n)
HALF = (RAW, bytes(range(256)) * 8 + bytes(2048))      # half pattern, half zeros


def request_seeds():
    s = []
    kinds = [ZERO, BYTE, WORD, TEXT, RND(7), HALF]
    # put and get of every kind of page, in each kind of pool, each engine
    for setup in (0, S_ENGINE1):
        for pool in (A_EPH, A_PERS, A_SHARED, A_KEEP):
            for k in kinds:
                s.append(inp(setup, rec(PUT, pool, 5, page=k),
                             rec(GET, pool, 5, page=ZERO),
                             rec(GET, pool, 5, page=ZERO)))
    # codecs for client A
    for codec in (0, 1, 2):
        s.append(inp(S_CODEC(codec), rec(PUT, A_PERS, 1, page=TEXT),
                     rec(PUT, A_PERS, 2, page=HALF), rec(PUT, A_PERS, 3, page=RND(3)),
                     rec(GET, A_PERS, 1), rec(GET, A_PERS, 2), rec(GET, A_PERS, 3)))
    # duplicates: put-put-get, and dedup of equal pages (within and across clients)
    s.append(inp(0, rec(PUT, A_PERS, 0, page=TEXT), rec(PUT, A_PERS, 0, page=RND(1)),
                 rec(GET, A_PERS, 0)))
    for setup in (0, S_ENGINE1):
        s.append(inp(setup, rec(PUT, A_PERS, 0, page=RND(9), count=8),
                     rec(PUT, B_PERS, 0, page=RND(9), b=True, count=8),
                     rec(GET, A_PERS, 3), rec(GET, B_PERS, 3, b=True)))
    # misses, flushes
    s.append(inp(0, rec(GET, A_EPH, 1), rec(GET, A_PERS, 1), rec(FLUSH_PAGE, A_PERS, 1)))
    s.append(inp(0, rec(PUT, A_PERS, 0, page=TEXT, count=10),
                 rec(FLUSH_PAGE, A_PERS, 3), rec(GET, A_PERS, 3),
                 rec(FLUSH_OBJECT, A_PERS), rec(GET, A_PERS, 4),
                 rec(FLUSH_OBJECT, A_PERS, oid=(9, 9, 9))))
    s.append(inp(0, rec(PUT, A_EPH, 0, page=RND(2), count=4, oid=(1, 0, 0)),
                 rec(PUT, A_EPH, 0, page=RND(2), count=4, oid=(2, 0, 0)),
                 rec(FLUSH_OBJECT, A_EPH, oid=(1, 0, 0)), rec(GET, A_EPH, 1, oid=(2, 0, 0))))
    # new pool: valid and invalid flags
    valid = [0, PERSIST, KEEP, PERSIST | KEEP, VERSION1, VERSION1 | PERSIST]
    invalid = [0x4, 0x10, 0xF0, 2 << 24, 0xFF << 24, SHARED | PERSIST, SHARED | KEEP,
               0x100, 0x800000, 0xFFFFFFFF]
    for f in valid + invalid:
        s.append(inp(0, new_pool(f), rec(PUT, 4, 0, page=TEXT), rec(GET, 4, 0),
                     rec(IS_SHARED, 4)))
    for uuid in (U1, U2, (5, 6), (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)):
        s.append(inp(0, new_pool(SHARED, uuid), new_pool(SHARED, uuid),
                     rec(IS_SHARED, 4), new_pool(SHARED, uuid, b=True),
                     rec(PUT, 4, 0, page=WORD), rec(GET, 2, 0, page=ZERO, b=True)))
    # every slot taken, then more
    s.append(inp(0, rec(NEW_POOL, arg=0, count=20), rec(DESTROY_POOL, 7),
                 new_pool(PERSIST), rec(IS_SHARED, 7)))
    # regression (found by fuzz_request): with every slot taken, joining a shared pool
    # the client is already in gives its slot (was -ENOMEM), and a new one -ENOMEM
    s.append(inp(0, rec(NEW_POOL, arg=0, count=12), new_pool(SHARED, U1),
                 new_pool(SHARED, U2), rec(NEW_POOL, arg=0, count=14, b=True),
                 new_pool(SHARED, U1, b=True), new_pool(SHARED, U2, b=True)))
    # destroy: valid, twice, unknown ids; use after destroy; shared pool outliving a member
    s.append(inp(0, rec(PUT, A_PERS, 0, page=TEXT), rec(DESTROY_POOL, A_PERS),
                 rec(DESTROY_POOL, A_PERS), rec(GET, A_PERS, 0), rec(DESTROY_POOL, 16),
                 rec(DESTROY_POOL, 0xFFFFFFFF), new_pool(PERSIST), rec(GET, A_PERS, 0)))
    s.append(inp(0, rec(PUT, A_SHARED, 0, page=TEXT), rec(DESTROY_POOL, A_SHARED),
                 rec(GET, B_SHARED, 0, b=True), new_pool(SHARED, U1),
                 rec(GET, A_SHARED, 0), rec(DESTROY_POOL, B_SHARED, b=True),
                 rec(DESTROY_POOL, A_SHARED), new_pool(SHARED, U1), rec(GET, A_SHARED, 0)))
    # is_shared on each id
    s.append(inp(0, *[rec(IS_SHARED, i) for i in (0, 1, 2, 3, 4, 15, 16, 0x80000000)]))
    # invalid ops, hostile slots
    s.append(inp(0, rec(0), rec(8), rec(0xFFFFFFFF), rec(0x80000001, 1)))
    s.append(inp(0, rec(PUT, A_EPH, state=FREE), rec(PUT, A_EPH, state=DONE),
                 rec(GET, A_EPH, state=0xFFFFFFFF), rec(PUT, A_EPH, state=POSTED),
                 rec(GET, A_EPH, waiter=1)))
    s.append(inp(0, rec(PUT, 0xFFFFFFFF, page=TEXT), rec(GET, 16), rec(FLUSH_PAGE, 1000),
                 rec(FLUSH_OBJECT, 0xFFFF)))
    s.append(inp(0, rec(PUT, A_PERS, 0xFFFFFFFE, page=TEXT, count=4),
                 rec(GET, A_PERS, 0xFFFFFFFF), rec(GET, A_PERS, 0),
                 rec(PUT, A_PERS, 0, oid=(2**64 - 1,) * 3, page=BYTE),
                 rec(GET, A_PERS, 0, oid=(2**64 - 1,) * 3)))
    # the page left by a get put back (mode keep)
    s.append(inp(0, rec(PUT, A_PERS, 0, page=RND(5)), rec(GET, A_PERS, 0, page=ZERO),
                 rec(PUT, A_EPH, 0, page=(KEEPPAGE,)), rec(GET, A_EPH, 0, page=ZERO)))
    # memory pressure: ephemeral eviction, persistent refusal, host eviction
    s.append(inp(0, *[rec(PUT, A_EPH, i * 256, page=RND(1000 * (i + 1)), count=256) for i in range(2)],
                 rec(GET, A_EPH, 0), rec(GET, A_EPH, 511)))
    s.append(inp(0, *[rec(PUT, A_PERS, i * 256, page=RND(1000 * (i + 7)), count=256) for i in range(2)],
                 rec(PUT, A_EPH, 0, page=RND(1)), rec(FLUSH_OBJECT, A_PERS),
                 rec(PUT, A_EPH, 0, page=RND(1))))
    s.append(inp(0, rec(PUT, A_EPH, 0, page=RND(3), count=100),
                 rec(PUT, A_SHARED, 0, page=RND(4), count=100),
                 rec(GET, A_EPH, 50, evict=True), rec(GET, B_SHARED, 60, b=True, evict=True)))
    # compressed pages of many sizes: fragments of every class, holes, then pressure
    for pool in (A_EPH, A_PERS):
        s.append(inp(0, *[rec(PUT, pool, 64 * k, oid=(k, 0, 0), page=TEXT, noise=n, count=64)
                          for k, n in enumerate((2, 16, 64, 128, 200))],
                     *[rec(FLUSH_OBJECT, pool, oid=(k, 0, 0)) for k in (1, 3)],
                     rec(FLUSH_PAGE, pool, 0, oid=(0, 0, 0)),
                     rec(PUT, pool, 0, oid=(9, 0, 0), page=ZERO, noise=40, count=200),
                     rec(GET, pool, 5, oid=(4, 0, 0)), rec(GET, pool, 100, oid=(9, 0, 0))))
    s.append(inp(S_CODEC(2), rec(PUT, A_EPH, 0, page=ZERO, noise=30, count=150),
                 rec(PUT, A_EPH, 0, oid=(2, 0, 0), page=ZERO, noise=100, count=150, evict=True),
                 rec(GET, A_EPH, 149)))
    # allocation failures (the Nth from the first record on; or every one from it)
    work = [rec(PUT, A_PERS, 0, page=TEXT, noise=20, count=40, oid=(1, 0, 0)),
            rec(PUT, A_EPH, 0, page=RND(4), count=40, oid=(2, 0, 0)),
            rec(PUT, A_SHARED, 0, page=WORD, count=20), rec(PUT, B_PERS, 0, page=BYTE, b=True),
            new_pool(SHARED, U2), new_pool(PERSIST), rec(PUT, 4, 0, page=HALF),
            rec(GET, A_PERS, 7, oid=(1, 0, 0)), rec(FLUSH_OBJECT, A_PERS, oid=(1, 0, 0))]
    for nth in (1, 2, 3, 5, 8, 13, 40, 90):
        s.append(bytes([S_FAULT, nth]) + b"".join(work))
    s.append(bytes([S_FAULT | S_FAULT_ALL, 30]) + b"".join(work))
    s.append(bytes([S_FAULT | S_FAULT_ALL | S_ENGINE1, 10]) + b"".join(work))
    # cap, freeze
    s.append(inp(S_CAP_A, rec(PUT, A_PERS, 0, page=RND(1), count=20),
                 rec(PUT, A_PERS, 3, page=TEXT), rec(PUT, A_EPH, 0, page=TEXT)))
    s.append(inp(S_FREEZE_A, rec(PUT, A_EPH, 0, page=TEXT), rec(PUT, A_PERS, 0, page=TEXT),
                 rec(GET, A_PERS, 0), rec(FLUSH_PAGE, A_PERS, 0), new_pool(0),
                 rec(PUT, B_PERS, 0, page=TEXT, b=True)))
    s.append(inp(S_FREEZE_B, rec(PUT, A_SHARED, 0, page=TEXT), rec(PUT, B_SHARED, 0, b=True),
                 rec(GET, B_SHARED, 0, b=True)))
    # truncated: empty, setup only, a record cut inside the slot and inside the page
    s.append(b"")
    s.append(bytes([S_ENGINE1]))
    s.append(inp(0, rec(PUT, A_PERS, 0, page=TEXT)[:30]))
    s.append(inp(0, rec(PUT, A_PERS, 0, page=HALF)[:1000]))
    s.append(inp(0, rec(PUT, A_PERS, 0, page=RND(5))[:70]))
    return s


def hello(magic=TMW_MAGIC, version=TMW_VERSION, type_=MSG_HELLO, length=None, result=0,
          name=b"client"):
    body = name.ljust(NAME_MAX, b"\0")[:NAME_MAX]
    if length is None:
        length = 16 + NAME_MAX
    return struct.pack("<IHHIi", magic, version, type_, length, result) + body


def hello_seeds():
    full = bytes(range(0x21, 0x21 + NAME_MAX))
    return [
        hello(), hello(name=b""), hello(name=full), hello(name=b"a,b:c=d\x01\xff e\x7f"),
        hello(name=b"x" * 63), hello(result=-5),
        hello(magic=0x4D454D54), hello(version=2), hello(version=0), hello(type_=MSG_CTL),
        hello(type_=MSG_HELLO_REPLY), hello(length=79), hello(length=0xFFFFFFFF),
        hello()[:16], hello()[:79], hello() + b"\0", hello() + b"x" * 100, b"", b"\0" * 80,
    ]


# control requests (struct tmw_ctl)
CTL_OPS = dict(STATS=1, CLIENTS=2, LIST=3, FREEZE=4, THAW=5, SET=6, SHARED_AUTH=7, FLUSH=8,
               FREEABLE=9, SAVE=10, RESTORE=11)
SET_WEIGHT, SET_CAP, SET_COMPRESS = 1, 2, 4
RESTORE_NAME, RESTORE_UID = 1, 2
ALL = 0xFFFFFFFF


def ctl(op, client_id=0, arg=0, set_mask=0, arg64=0, weight=0, compress=0, cap=0,
        uuid=(0, 0), uid=0, reserved=0, name=b"", magic=TMW_MAGIC, version=TMW_CTL_VERSION,
        type_=MSG_CTL, length=None, result=0):
    body = struct.pack("<IIIIQIiQQQII", op, client_id, arg, set_mask, arg64, weight, compress,
                       cap, uuid[0], uuid[1], uid, reserved) + name.ljust(NAME_MAX, b"\0")[:NAME_MAX]
    if length is None:
        length = 16 + len(body)
    return struct.pack("<IHHIi", magic, version, type_, length, result) + body


def ctl_seeds():
    o = CTL_OPS
    good = [ctl(o["STATS"]), ctl(o["FREEABLE"]), ctl(o["CLIENTS"]), ctl(o["CLIENTS"], 3),
            ctl(o["LIST"]), ctl(o["LIST"], 2, arg=1), ctl(o["FREEZE"], ALL), ctl(o["THAW"], 7),
            ctl(o["SET"], 2, set_mask=SET_WEIGHT, weight=50),
            ctl(o["SET"], 2, set_mask=SET_CAP, cap=1000),
            ctl(o["SET"], 2, set_mask=SET_COMPRESS, compress=2),
            ctl(o["SET"], 2, set_mask=7, weight=1, cap=2, compress=1),
            ctl(o["SHARED_AUTH"], 2, arg=1, uuid=U1), ctl(o["SHARED_AUTH"], 2, arg=0, uuid=U2),
            ctl(o["FLUSH"], arg64=1 << 20), ctl(o["SAVE"], 4), ctl(o["RESTORE"]),
            ctl(o["RESTORE"], arg=RESTORE_NAME, name=b"db"),
            ctl(o["RESTORE"], arg=RESTORE_UID, uid=1000),
            ctl(o["RESTORE"], arg=3, name=b"n" * 63, uid=0)]
    bad = [ctl(0), ctl(12), ctl(0xFFFFFFFF), ctl(o["STATS"], result=-1),
           ctl(o["STATS"], reserved=1), ctl(o["STATS"], client_id=1), ctl(o["STATS"], name=b"x"),
           ctl(o["LIST"], arg=2), ctl(o["SET"], ALL, set_mask=1, weight=1),
           ctl(o["SET"], 2, set_mask=0), ctl(o["SET"], 2, set_mask=8),
           ctl(o["SET"], 2, set_mask=SET_WEIGHT, cap=5), ctl(o["SET"], 2, set_mask=4, compress=3),
           ctl(o["SET"], 2, set_mask=4, compress=-1), ctl(o["SHARED_AUTH"], ALL, arg=1),
           ctl(o["SHARED_AUTH"], 2, arg=2), ctl(o["FLUSH"], uuid=(1, 0)), ctl(o["SAVE"], ALL),
           ctl(o["RESTORE"], arg=4), ctl(o["RESTORE"], arg=1, name=b""),
           ctl(o["RESTORE"], arg=1, name=b"n" * 64), ctl(o["RESTORE"], arg=1, name=b"a\0b"),
           ctl(o["RESTORE"], arg=2, uid=ALL), ctl(o["RESTORE"], uid=5),
           ctl(o["STATS"], magic=0), ctl(o["STATS"], version=2), ctl(o["STATS"], type_=MSG_HELLO),
           ctl(o["STATS"], length=16), ctl(o["STATS"])[:16], ctl(o["STATS"])[:100],
           ctl(o["STATS"]) + b"\0" * 8, b"", b"\0" * 16]
    return good + bad


def write(dirname, inputs):
    os.makedirs(dirname, exist_ok=True)
    for data in inputs:
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(dirname, name), "wb") as f:
            f.write(data)
    print(f"{dirname}: {len(inputs)} seeds")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    write(os.path.join(out, "request"), request_seeds())
    write(os.path.join(out, "hello"), hello_seeds())
    write(os.path.join(out, "ctl"), ctl_seeds())


if __name__ == "__main__":
    main()
