"""wskit benchmarks: wskit vs python-websockets, measured in the same run.

Every case runs both libraries alternately (interleaved rounds) and reports
the median time of each and the ratio websockets/wskit (> 1 means wskit is
faster). Machines here are noisy: trust the ratios, not absolute times.

``--keep-freed-memory`` makes the process keep the memory it frees for
reuse (glibc: no trimming of the heap, no mapping of its own per allocation
below 32 MiB; set with mallopt at start). With glibc's defaults, the
large-message cases mostly measure what the machine charges for pages
touched for the first time: the same for both libraries (one fresh page per
page of a message they keep), and it varied fourfold within an hour on a
shared machine. With the option they measure what the libraries do. It
changes other cases too: python-websockets' deflate contexts (about 550 KB
per connection) are then reused instead of mapped afresh.

    python bench/run.py                      # all cases
    python bench/run.py --quick              # fewer rounds
    python bench/run.py -k frames            # cases whose name contains "frames"
    python bench/run.py --keep-freed-memory  # large messages without first-touch page faults
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets
from websockets.client import ClientProtocol as WSClient
from websockets.protocol import Protocol as WSProtocol
from websockets.protocol import Side as WSSide
from websockets.protocol import State as WSState
from websockets.server import ServerProtocol as WSServer
from websockets.uri import parse_uri as ws_parse_uri

import wskit
from wskit import ClientProtocol, Protocol, ServerProtocol, Side
from wskit.mask import USING_SPEEDUPS
from wskit.plugin import PluginManager

Case = Callable[[], Callable[[], object]]  # setup -> timed function
RESULTS: list[dict[str, object]] = []


def measure(name: str, ours: Case, theirs: Case, rounds: int, note: str = "", warmup: int = 2) -> None:
    """Time ``ours`` and ``theirs`` alternately; print medians and the ratio.

    ``warmup`` unmeasured rounds of each come first (allocator, caches). The
    ratio is the median of the per-round ratios (each round times both
    libraries back to back, in alternating order), which a change in the
    machine's load between rounds moves far less than a ratio of medians;
    the spread shown is that of the per-round ratios (25th-75th percentile).
    """
    t_ours: list[float] = []
    t_theirs: list[float] = []
    for i in range(warmup + rounds):
        pair = [(ours, t_ours), (theirs, t_theirs)]
        if i % 2:
            pair.reverse()
        for setup, times in pair:
            fn = setup()
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t0
            gc.enable()
            if i >= warmup:
                times.append(elapsed)
    a = statistics.median(t_ours)
    b = statistics.median(t_theirs)
    ratios = sorted(y / x for x, y in zip(t_ours, t_theirs, strict=True))
    ratio = statistics.median(ratios)
    low, high = (statistics.quantiles(ratios, n=4)[0::2] if len(ratios) >= 4 else (ratios[0], ratios[-1]))
    RESULTS.append({"case": name, "wskit_ms": a * 1e3, "websockets_ms": b * 1e3, "ratio": ratio,
                    "ratio_iqr": [low, high], "note": note})
    print(f"{name:<52} {a * 1e3:10.3f} {b * 1e3:12.3f} {ratio:8.2f}x  {f'{low:.2f}-{high:.2f}':>10}  {note}",
          flush=True)


# -- frames --------------------------------------------------------------------

N_SMALL = 10_000
SMALL = "x" * 32


def masked_text_stream() -> bytes:
    c = Protocol(Side.CLIENT)
    return b"".join(b"".join(c.send_text(SMALL)) for _ in range(N_SMALL))


def case_receive_small(stream: bytes) -> tuple[Case, Case]:
    def ours() -> Callable[[], object]:
        p = Protocol(Side.SERVER)
        return lambda: p.receive_data(stream)

    def theirs() -> Callable[[], object]:
        p = WSProtocol(WSSide.SERVER, state=WSState.OPEN, max_size=2**20)

        def run() -> object:
            p.receive_data(stream)
            return p.events_received()

        return run

    return ours, theirs


def case_send_small() -> tuple[Case, Case]:
    def ours() -> Callable[[], object]:
        p = Protocol(Side.CLIENT)
        send = p.send_text

        def run() -> None:
            for _ in range(N_SMALL):
                send(SMALL)

        return run

    def theirs() -> Callable[[], object]:
        p = WSProtocol(WSSide.CLIENT, state=WSState.OPEN)

        def run() -> None:
            send = p.send_text
            out = p.data_to_send
            for _ in range(N_SMALL):
                send(SMALL.encode())  # websockets takes bytes; encoding is part of the job
                out()

        return run

    return ours, theirs


def case_receive_big(size: int, chunk: int | None, repeat: int = 1) -> tuple[Case, Case]:
    c = Protocol(Side.CLIENT, max_size=None)
    wire = b"".join(c.send_binary(os.urandom(size)))
    pieces = [wire] if chunk is None else [wire[i:i + chunk] for i in range(0, len(wire), chunk)]

    def ours() -> Callable[[], object]:
        p = Protocol(Side.SERVER, max_size=None)

        def run() -> object:
            recv = p.receive_data
            events = []
            for _ in range(repeat):
                for piece in pieces:
                    events += recv(piece)
            assert len(events) == repeat and len(events[0].data) == size  # type: ignore[attr-defined]
            return events

        return run

    def theirs() -> Callable[[], object]:
        p = WSProtocol(WSSide.SERVER, state=WSState.OPEN, max_size=None)

        def run() -> object:
            recv = p.receive_data
            events = []
            for _ in range(repeat):
                for piece in pieces:
                    recv(piece)
                events += p.events_received()
            assert len(events) == repeat
            return events

        return run

    return ours, theirs


def case_send_big(size: int, repeat: int = 1) -> tuple[Case, Case]:
    payload = os.urandom(size)

    def ours() -> Callable[[], object]:
        p = Protocol(Side.CLIENT)

        def run() -> object:
            send = p.send_binary
            for _ in range(repeat):
                out = send(payload)
            return out

        return run

    def theirs() -> Callable[[], object]:
        p = WSProtocol(WSSide.CLIENT, state=WSState.OPEN)

        def run() -> object:
            send = p.send_binary
            take = p.data_to_send
            for _ in range(repeat):
                send(payload)
                out = take()
            return out

        return run

    return ours, theirs


# -- handshake / lifecycle -----------------------------------------------------

N_LIFE = 200


def wskit_lifecycle(compression: bool = False) -> None:
    kw: dict[str, object] = {} if compression else {"extensions": []}
    client = ClientProtocol("ws://localhost:8765/chat", **kw)  # type: ignore[arg-type]
    server = ServerProtocol(**kw)  # type: ignore[arg-type]
    (request,) = server.receive_data(client.connect()[0])
    (_response,) = client.receive_data(server.accept(request)[0])
    assert server.receive_data(b"".join(client.send_text("hello")))[0]
    assert client.receive_data(b"".join(server.send_text("hello")))[0]
    client.receive_data(server.receive_data(b"".join(client.send_close()))[0] and b"".join(server.send_close()))
    server.receive_eof()
    client.receive_eof()


WS_URI = ws_parse_uri("ws://localhost:8765/chat")


def websockets_lifecycle(compression: bool = False) -> None:
    if compression:
        from websockets.extensions.permessage_deflate import (
            ClientPerMessageDeflateFactory,
            ServerPerMessageDeflateFactory,
        )

        client = WSClient(WS_URI, extensions=[ClientPerMessageDeflateFactory()])
        server = WSServer(extensions=[ServerPerMessageDeflateFactory()])
    else:
        client = WSClient(WS_URI)
        server = WSServer()
    request = client.connect()
    client.send_request(request)
    server.receive_data(b"".join(client.data_to_send()))
    (req,) = server.events_received()
    response = server.accept(req)
    server.send_response(response)
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    client.send_text(b"hello")
    server.receive_data(b"".join(client.data_to_send()))
    server.events_received()
    server.send_text(b"hello")
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    client.send_close()
    server.receive_data(b"".join(client.data_to_send()))
    server.events_received()
    client.receive_data(b"".join(server.data_to_send()))  # the server answers the close itself
    client.events_received()
    server.receive_eof()
    client.receive_eof()


def case_lifecycle(compression: bool) -> tuple[Case, Case]:
    def ours() -> Callable[[], object]:
        def run() -> None:
            for _ in range(N_LIFE):
                wskit_lifecycle(compression)

        return run

    def theirs() -> Callable[[], object]:
        def run() -> None:
            for _ in range(N_LIFE):
                websockets_lifecycle(compression)

        return run

    return ours, theirs


def memory_per_pair(make: Callable[[], object], n: int = 1000) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [make() for _ in range(n)]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


def wskit_open_pair(compression: bool = False, message: bool = False) -> object:
    kw: dict[str, object] = {} if compression else {"extensions": []}
    client = ClientProtocol("ws://localhost:8765/chat", **kw)  # type: ignore[arg-type]
    server = ServerProtocol(**kw)  # type: ignore[arg-type]
    (request,) = server.receive_data(client.connect()[0])
    client.receive_data(server.accept(request)[0])
    if message:
        server.receive_data(b"".join(client.send_text('{"a": 1}' * 64)))
        client.receive_data(b"".join(server.send_text('{"a": 1}' * 64)))
    return client, server


def websockets_open_pair(compression: bool = False, message: bool = False) -> object:
    if compression:
        from websockets.extensions.permessage_deflate import (
            ClientPerMessageDeflateFactory,
            ServerPerMessageDeflateFactory,
        )

        client = WSClient(WS_URI, extensions=[ClientPerMessageDeflateFactory()])
        server = WSServer(extensions=[ServerPerMessageDeflateFactory()])
    else:
        client = WSClient(WS_URI)
        server = WSServer()
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    (req,) = server.events_received()
    server.send_response(server.accept(req))
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    if message:
        client.send_text(b'{"a": 1}' * 64)
        server.receive_data(b"".join(client.data_to_send()))
        server.events_received()
        server.send_text(b'{"a": 1}' * 64)
        client.receive_data(b"".join(server.data_to_send()))
        client.events_received()
    return client, server


# -- permessage-deflate --------------------------------------------------------


def json_messages(n: int = 2000) -> list[str]:
    import random

    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "user", "price", "quantity", "status", "ok", "error"]
    out = []
    for i in range(n):
        items = []
        while len(json.dumps(items)) < 1900:
            items.append({"id": i * 100 + len(items), "name": rng.choice(words) + str(rng.randrange(1000)),
                          "value": round(rng.random() * 1000, 3), "tags": rng.sample(words, 3)})
        out.append(json.dumps(items))
    return out


def case_deflate(messages: list[str]) -> tuple[Case, Case] | None:
    try:
        from wskit.extensions.permessage_deflate import (
            ClientPerMessageDeflateFactory as OurClientPMD,
        )
        from wskit.extensions.permessage_deflate import (
            ServerPerMessageDeflateFactory as OurServerPMD,
        )
    except ImportError:
        return None
    from websockets.extensions.permessage_deflate import (
        ClientPerMessageDeflateFactory,
        ServerPerMessageDeflateFactory,
    )

    def ours() -> Callable[[], object]:
        client = ClientProtocol("ws://localhost/", extensions=[OurClientPMD()])
        server = ServerProtocol(extensions=[OurServerPMD()])
        (request,) = server.receive_data(client.connect()[0])
        client.receive_data(server.accept(request)[0])
        assert client.extensions, "deflate was not negotiated"

        def run() -> None:
            send = client.send_text
            recv = server.receive_data
            for m in messages:
                for data in send(m):
                    recv(data)

        return run

    def theirs() -> Callable[[], object]:
        client = WSClient(WS_URI, extensions=[ClientPerMessageDeflateFactory()])
        server = WSServer(extensions=[ServerPerMessageDeflateFactory()])
        client.send_request(client.connect())
        server.receive_data(b"".join(client.data_to_send()))
        (req,) = server.events_received()
        server.send_response(server.accept(req))
        client.receive_data(b"".join(server.data_to_send()))
        client.events_received()

        def run() -> None:
            for m in messages:
                client.send_text(m.encode())
                server.receive_data(b"".join(client.data_to_send()))
                server.events_received()

        return run

    return ours, theirs


def _plugin_case(pm: PluginManager, stream: bytes) -> Case:
    def setup() -> Callable[[], object]:
        # A logger not at DEBUG: what production runs with.
        p = Protocol(Side.SERVER, plugin_manager=pm, logger=logging.getLogger("bench.quiet"))
        return lambda: p.receive_data(stream)

    return setup


def case_plugin_overhead(stream: bytes) -> tuple[Case, Case] | None:
    """Core with no plugins vs the default set (permessage-deflate registered, not negotiated).

    The logging plugin is not registered here: "disabled" means not
    registered, and an unregistered plugin costs nothing per frame.
    """
    bare = PluginManager(builtins=False, entry_points=False)
    default = PluginManager(entry_points=False)
    return _plugin_case(bare, stream), _plugin_case(default, stream)


def case_logging_registered(stream: bytes) -> tuple[Case, Case] | None:
    """Core with no plugins vs the logging plugin registered, logger not at DEBUG.

    Registered, its hooks run for every frame (they return after one
    ``isEnabledFor`` check): this is the price of enabling it, not ~1.00.
    """
    logging.getLogger("bench.quiet").setLevel(logging.WARNING)
    bare = PluginManager(builtins=False, entry_points=False)
    with_logging = PluginManager(builtins=False, entry_points=False, enable=["logging"])
    return _plugin_case(bare, stream), _plugin_case(with_logging, stream)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> str:
    """Make glibc keep freed memory for reuse; return a line saying what the allocator does."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return "allocator: left as it is (no glibc mallopt here)"
    # 32 MiB is glibc's largest mmap threshold on 64-bit systems.
    refused = [name for name, param, value in (("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, 32 << 20),
                                               ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, 1 << 30))
               if mallopt(param, value) != 1]
    if refused:
        return f"allocator: glibc refused {', '.join(refused)}: freed memory is not all kept"
    return "allocator: freed memory kept for reuse (--keep-freed-memory: glibc mallopt)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="keep freed memory for reuse (glibc mallopt): no first-touch page faults per round")
    args = parser.parse_args()
    r = 5 if args.quick else 15
    allocator = keep_freed_memory() if args.keep_freed_memory else "allocator: as it is (glibc: its default trimming)"
    print(f"wskit {wskit.__version__} (C accelerator: {'yes' if USING_SPEEDUPS else 'no'}) vs "
          f"websockets {websockets.__version__}, Python {sys.version.split()[0]}")
    print(allocator)
    print(f"{'case':<52} {'wskit ms':>10} {'websockets ms':>12} {'ratio':>9}  {'IQR':>10}")
    stream = masked_text_stream()
    cases: list[tuple[str, Callable[[], tuple[Case, Case] | None], int, str]] = [
        ("frames: receive 10,000 masked 32-byte text", lambda: case_receive_small(stream), r, "server side"),
        ("frames: send 10,000 32-byte text (masking)", case_send_small, r, "client side"),
        ("frames: receive 1 MiB binary (one chunk) x 8", lambda: case_receive_big(2**20, None, 8), r, ""),
        ("frames: receive 64 KiB binary (one chunk) x 100", lambda: case_receive_big(2**16, None, 100), r, ""),
        ("frames: send 1 MiB binary (masking) x 8", lambda: case_send_big(2**20, 8), r, ""),
        ("frames: receive 1 MiB in 1460-byte chunks x 8", lambda: case_receive_big(2**20, 1460, 8), max(5, r // 2),
         "one connection"),
        ("frames: receive 4 MiB in 1460-byte chunks", lambda: case_receive_big(4 * 2**20, 1460), max(5, r // 2), ""),
        ("frames: receive 16 MiB in 1460-byte chunks", lambda: case_receive_big(16 * 2**20, 1460), max(5, r // 2),
         "linear: ~4x the 4 MiB case"),
        (f"handshake: {N_LIFE} full lifecycles", lambda: case_lifecycle(False), r, "no compression"),
        (f"handshake: {N_LIFE} full lifecycles, deflate", lambda: case_lifecycle(True), r, "deflate negotiated"),
        ("deflate: 2,000 ~2 KB JSON round trips", lambda: case_deflate(json_messages()), max(3, r // 3),
         "compress+mask, decompress"),
    ]
    for name, make, rounds, note in cases:
        if args.k and args.k not in name:
            continue
        pair = make()
        if pair is None:
            print(f"{name:<52} skipped (not available)")
            continue
        measure(name, pair[0], pair[1], rounds, note)
    if not args.k or "plugin" in args.k:
        pair = case_plugin_overhead(stream)
        if pair is not None:
            print("\nplugins: same wskit receive of 10,000 frames; 'ratio' = default-plugins / no-plugins time")
            measure("plugins: no plugins vs built-ins registered", pair[0], pair[1], r, "~1.00 = free when unused")
        pair = case_logging_registered(stream)
        if pair is not None:
            measure("plugins: logging registered, logger not at DEBUG", pair[0], pair[1], r,
                    "per-frame hook cost; unregistered = free")
    if not args.k or "memory" in args.k:
        print("\nmemory per open connection pair (tracemalloc, 1,000 pairs)")
        for label, ours, theirs in [
            ("no compression", lambda: wskit_open_pair(False), lambda: websockets_open_pair(False)),
            ("deflate negotiated, idle", lambda: wskit_open_pair(True), lambda: websockets_open_pair(True)),
            ("deflate, after one message each way", lambda: wskit_open_pair(True, True),
             lambda: websockets_open_pair(True, True)),
        ]:
            a = memory_per_pair(ours)
            b = memory_per_pair(theirs)
            RESULTS.append({"case": f"memory: {label}", "wskit_bytes": a, "websockets_bytes": b, "ratio": b / a})
            print(f"  {label:<40} wskit {a / 1024:8.1f} KB   websockets {b / 1024:8.1f} KB   ratio {b / a:6.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
