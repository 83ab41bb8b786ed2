"""The fault-injection proxy: which bits it flips, what it forwards, and that it
leaves nothing behind.  Pure Python on 127.0.0.1: no QEMU.

Every socket has a timeout and every thread is joined with one, so a proxy
that loses bytes or hangs fails these tests instead of hanging them.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from migtest.errors import ConfigError, WaitTimeout
from migtest.proxy import CHUNK, Corruption, MigrationProxy

#: Seconds any one socket operation, or thread, of these tests may take.
TIMEOUT = 10.0

Address = Tuple[str, int]


# -- Corruption, on its own ----------------------------------------------------


def expected_damage(data: bytes, after: int, every: int) -> bytes:
    """``data`` as the docstring of :class:`Corruption` says it must come out.

    Written from the specification, not from the code: the k-th flip
    (counting from 0) is at byte ``after + k * every`` and flips bit ``k % 8``.
    """
    damaged = bytearray(data)
    for k, position in enumerate(range(after, len(data), every)):
        damaged[position] ^= 1 << (k % 8)
    return bytes(damaged)


def pass_through(corruption: Corruption, data: bytes, cuts: Sequence[int]) -> bytes:
    """Feed ``data`` to ``corruption`` in pieces ending at ``cuts``, as the proxy does."""
    pieces = []
    offset = 0
    for end in [*cuts, len(data)]:
        pieces.append(corruption.apply(data[offset:end], offset))
        offset = end
    return b"".join(pieces)


def changes(before: bytes, after: bytes) -> Dict[int, int]:
    """``{position: before XOR after}`` wherever the two differ."""
    assert len(before) == len(after), "the length changed"
    return {i: a ^ b for i, (a, b) in enumerate(zip(before, after)) if a != b}


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x5A])
def test_bits_flip_at_after_and_every_bytes_on_with_the_bit_moving(fill: int) -> None:
    data = bytes([fill]) * 50
    corruption = Corruption(after=3, every=5)
    damaged = corruption.apply(data, 0)
    # Flipped, not set: whatever the byte held, exactly one bit changes,
    # the next one up at each flip, wrapping after bit 7.
    assert changes(data, damaged) == {
        3: 0x01, 8: 0x02, 13: 0x04, 18: 0x08, 23: 0x10,
        28: 0x20, 33: 0x40, 38: 0x80, 43: 0x01, 48: 0x02,
    }  # fmt: skip
    assert corruption.flipped == 10


def test_nothing_before_after_is_touched() -> None:
    after = 3 * CHUNK + 5
    data = bytes(after + 1)
    corruption = Corruption(after=after, every=CHUNK)
    cuts = list(range(CHUNK, after, CHUNK))
    untouched = pass_through(corruption, data[:after], cuts)
    assert untouched == data[:after] and corruption.flipped == 0
    assert corruption.apply(data[after:], after) == b"\x01"
    assert corruption.flipped == 1


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param([], id="one-piece"),
        pytest.param(list(range(1, 200)), id="byte-by-byte"),
        pytest.param([17, 17, 60], id="an-empty-piece"),
        # A piece ending just before a flip, the next starting on it...
        pytest.param([17, 40, 63], id="cut-at-flips"),
        # ...and one flip the last byte of a piece, the next the first.
        pytest.param([18, 41, 64], id="cut-after-flips"),
        pytest.param([5, 10, 15, 100, 101], id="pieces-without-flips"),
    ],
)
def test_where_the_stream_is_cut_changes_nothing(cuts: List[int]) -> None:
    data = bytes(range(200))
    corruption = Corruption(after=17, every=23)
    assert pass_through(corruption, data, cuts) == expected_damage(data, 17, 23)
    assert corruption.flipped == len(range(17, 200, 23))


def test_random_cuts_of_a_long_stream_change_nothing() -> None:
    rng = random.Random(1234)
    data = rng.randbytes(5 * CHUNK)
    after, every = CHUNK - 7, 4099
    cuts = sorted(rng.sample(range(1, len(data)), 300))
    assert pass_through(Corruption(after, every), data, cuts) == expected_damage(data, after, every)


def test_every_one_flips_every_byte_from_after_on() -> None:
    data = bytes(20)
    damaged = Corruption(after=4, every=1).apply(data, 0)
    assert damaged == bytes(4) + bytes(1 << (k % 8) for k in range(16))


@pytest.mark.parametrize(
    "after, every, parameter",
    [(0, 0, "every"), (0, -8, "every"), (-1, 8, "after")],
)
def test_a_corruption_that_cannot_work_is_refused(after: int, every: int, parameter: str) -> None:
    """``every`` of 0 would flip the same byte forever, in the proxy's loop;
    a negative ``after`` would index the data from its end."""
    with pytest.raises(ConfigError) as error:
        Corruption(after=after, every=every)
    assert error.value.parameter == parameter


# -- MigrationProxy, between two sockets of the test ---------------------------


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def dialer(target: Address) -> Callable[[], socket.socket]:
    """How the proxy reaches ``target``: TCP, as a tcp channel's dialer does."""
    return lambda: socket.create_connection(target, timeout=TIMEOUT)


@contextlib.contextmanager
def proxy_to(
    target: Address, corruption: Optional[Corruption] = None, delay: float = 0.0
) -> Iterator[Tuple[MigrationProxy, Address]]:
    """A started proxy to ``target``, closed however the test ends."""
    proxy = MigrationProxy(dialer(target), corruption, delay)
    try:
        yield proxy, proxy.start()
    finally:
        proxy.close()


@pytest.fixture
def destination() -> Iterator[socket.socket]:
    """What the proxy forwards to: a listening socket of the test's own."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        yield listener


def target_of(listener: socket.socket) -> Address:
    host, port = listener.getsockname()[:2]
    return host, port


def connect(proxy: Address, listener: socket.socket) -> Tuple[socket.socket, socket.socket]:
    """A connection through the proxy: the source's end and the destination's.

    One byte goes each way first: once it has, the proxy pumps both
    directions, so a later cut() or close() cannot miss the connection.
    """
    source = socket.create_connection(proxy, timeout=TIMEOUT)
    try:
        dest, _ = listener.accept()
    except OSError:
        source.close()
        raise
    dest.settimeout(TIMEOUT)
    source.sendall(b">")
    assert dest.recv(1) == b">"
    dest.sendall(b"<")
    assert source.recv(1) == b"<"
    return source, dest


def receive(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes from ``sock``; fails if the stream ends first."""
    data = bytearray()
    while len(data) < size:
        piece = sock.recv(min(size - len(data), 1 << 20))
        assert piece, f"the stream ended after {len(data)} of {size} bytes"
        data += piece
    return bytes(data)


def send_while_receiving(sender: socket.socket, receiver: socket.socket, data: bytes) -> bytes:
    """Send ``data`` from a thread while this one receives it: more than the
    socket buffers hold would otherwise block the sender for good."""
    thread = threading.Thread(target=sender.sendall, args=(data,), daemon=True)
    thread.start()
    try:
        return receive(receiver, len(data))
    finally:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the sender is stuck"


def assert_dropped(sock: socket.socket, name: str) -> None:
    """The other end of ``sock`` went away: end of stream, or a reset."""
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    except socket.timeout:
        pytest.fail(f"the {name} connection is still up {TIMEOUT} s later")
    assert data == b"", f"the {name} connection is still up: it received {data!r}"


def test_bytes_cross_both_ways_and_only_the_source_stream_is_damaged(
    destination: socket.socket,
) -> None:
    # More than a few reads long, with flips straddling read boundaries.
    forward = random.Random(1).randbytes(3 * CHUNK + 123)
    backward = random.Random(2).randbytes(2 * CHUNK + 7)
    after, every = CHUNK - 3, CHUNK // 2 + 1
    corruption = Corruption(after, every)
    with proxy_to(target_of(destination), corruption) as (proxy, address):
        source, dest = connect(address, destination)
        with source, dest:
            # The handshake byte of connect() is the stream's first.
            received = send_while_receiving(source, dest, forward)
            returned = send_while_receiving(dest, source, backward)
    assert received == expected_damage(b">" + forward, after, every)[1:]
    assert returned == backward, "the destination-to-source direction was damaged"
    assert proxy.forwarded == 1 + len(forward), "the return path counts as forwarded"
    assert corruption.flipped == len(range(after, 1 + len(forward), every))


def test_without_corruption_the_stream_is_intact(destination: socket.socket) -> None:
    data = random.Random(3).randbytes(2 * CHUNK + 1)
    with proxy_to(target_of(destination)) as (proxy, address):
        source, dest = connect(address, destination)
        with source, dest:
            assert send_while_receiving(source, dest, data) == data
    assert proxy.forwarded == 1 + len(data)


def test_cut_drops_every_connection_at_once(destination: socket.socket) -> None:
    with proxy_to(target_of(destination)) as (proxy, address):
        first = connect(address, destination)
        second = connect(address, destination)
        with first[0], first[1], second[0], second[1]:
            proxy.cut()
            for k, (source, dest) in enumerate((first, second)):
                assert_dropped(source, f"source end of connection {k}")
                assert_dropped(dest, f"destination end of connection {k}")


def test_an_unreachable_destination_drops_the_source() -> None:
    # Bound but not listening: the kernel refuses connections, and keeps the
    # port from being reused while the test runs.
    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        with proxy_to(target_of(nobody)) as (_, address):
            with socket.create_connection(address, timeout=TIMEOUT) as source:
                assert_dropped(source, "source")


def test_close_drops_everything_leaves_nothing_and_may_be_repeated(
    destination: socket.socket,
) -> None:
    threads = set(threading.enumerate())
    descriptors = open_descriptors()
    proxy = MigrationProxy(dialer(target_of(destination)))
    address = proxy.start()
    try:
        source, dest = connect(address, destination)
    except BaseException:
        proxy.close()
        raise
    with source, dest:
        proxy.close()
        # At once: a thread that ends on its own a little later was still
        # left running by close().
        left = set(threading.enumerate()) - threads
        assert left == set(), "a thread was left running"
        assert_dropped(source, "source")
        assert_dropped(dest, "destination")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=TIMEOUT).close()
    proxy.close()
    proxy.cut()  # nothing left to cut: no error either
    assert open_descriptors() == descriptors, "a descriptor was left open"


def test_a_cut_while_the_destination_is_dialled_drops_the_connection(
    destination: socket.socket,
) -> None:
    dialling, go_on = threading.Event(), threading.Event()

    def slow_dial() -> socket.socket:
        dialling.set()
        go_on.wait(TIMEOUT)
        return socket.create_connection(target_of(destination), timeout=TIMEOUT)

    proxy = MigrationProxy(slow_dial)
    try:
        source = socket.create_connection(proxy.start(), timeout=TIMEOUT)
        with source:
            assert dialling.wait(TIMEOUT), "the proxy never dialled"
            proxy.cut()  # the source is connected, the destination not yet
            go_on.set()
            dest, _ = destination.accept()
            with dest:
                dest.settimeout(TIMEOUT)
                assert_dropped(source, "source")
                assert_dropped(dest, "destination")
    finally:
        go_on.set()
        proxy.close()


def test_a_connection_the_proxy_takes_after_a_cut_is_dropped(
    destination: socket.socket,
) -> None:
    # The source connects while the proxy's loop is busy: the kernel has the
    # connection, the proxy has not taken it yet when the link is cut (as
    # when QEMU's source says postcopy-recover and the test cuts at once).
    with proxy_to(target_of(destination)) as (proxy, address):
        blocked = threading.Event()

        def block_the_loop() -> None:
            blocked.set()
            time.sleep(0.5)

        proxy._loop.call_soon_threadsafe(block_the_loop)
        assert blocked.wait(TIMEOUT)
        with socket.create_connection(address, timeout=TIMEOUT) as source:
            proxy.cut()
            assert_dropped(source, "source")
            destination.settimeout(0.5)
            with pytest.raises(socket.timeout):
                destination.accept()[0].close()


def test_linked_counts_connections_that_reached_the_destination(
    destination: socket.socket,
) -> None:
    with proxy_to(target_of(destination)) as (proxy, address):
        with pytest.raises(WaitTimeout, match=r"1 connection.*0 linked"):
            proxy.wait_until_linked(1, timeout=0.3)
        source, dest = connect(address, destination)
        with source, dest:
            proxy.wait_until_linked(1)
            with pytest.raises(WaitTimeout, match=r"2 connection.*1 linked"):
                proxy.wait_until_linked(2, timeout=0.3)


def test_a_proxy_never_started_closes_cleanly() -> None:
    threads = set(threading.enumerate())
    descriptors = open_descriptors()
    proxy = MigrationProxy(dialer(("127.0.0.1", 9)))  # never dialled
    proxy.cut()
    proxy.close()
    proxy.close()
    assert set(threading.enumerate()) - threads == set()
    assert open_descriptors() == descriptors, "its event loop was left open"


def test_a_stalled_stream_holds_the_source_bytes_until_resumed(
    destination: socket.socket,
) -> None:
    with proxy_to(target_of(destination)) as (proxy, address):
        source, dest = connect(address, destination)
        with source, dest:
            proxy.stall()
            source.sendall(b"held")
            dest.settimeout(0.3)
            with pytest.raises(socket.timeout):
                dest.recv(4)  # nothing passes while stalled...
            dest.sendall(b"back")  # ...from the source: the way back stays open
            assert receive(source, 4) == b"back"
            dest.settimeout(TIMEOUT)
            proxy.resume()
            assert receive(dest, 4) == b"held"


def test_a_stream_stalled_after_some_bytes_passes_those_only(
    destination: socket.socket,
) -> None:
    with proxy_to(target_of(destination)) as (proxy, address):
        source, dest = connect(address, destination)
        with source, dest:
            before = proxy.forwarded
            proxy.stall(after=3)
            source.sendall(b"abcdef")  # one chunk: it is split where the stall starts
            assert receive(dest, 3) == b"abc"
            dest.settimeout(0.3)
            with pytest.raises(socket.timeout):
                dest.recv(1)
            dest.settimeout(TIMEOUT)
            proxy.resume()
            assert receive(dest, 3) == b"def"
            assert proxy.forwarded - before == 6


def test_a_stall_after_a_negative_count_is_refused() -> None:
    proxy = MigrationProxy(dialer(("127.0.0.1", 9)))
    with pytest.raises(ConfigError, match="after"):
        proxy.stall(after=-1)
    proxy.close()


def test_a_delayed_stream_arrives_late_and_intact(destination: socket.socket) -> None:
    with proxy_to(target_of(destination), delay=0.3) as (_, address):
        source, dest = connect(address, destination)  # the handshake is delayed too
        with source, dest:
            start = time.monotonic()
            source.sendall(b"late")
            assert receive(dest, 4) == b"late"
            assert time.monotonic() - start >= 0.3
