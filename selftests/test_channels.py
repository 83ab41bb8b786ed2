"""Every channel against real QEMU: each carries a migration whole, alone
and behind the fault-injecting proxy, and the proxy's faults take effect."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from migtest.arch import MiB
from migtest.errors import ConfigError
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.proxy import FaultyChannel
from migtest.transport import Channel, ExecChannel, FdChannel, TcpChannel, UnixChannel
from migtest.verify import verify_migration
from migtest.wait import wait_for

LIVE: list[Callable[[], Channel]] = [UnixChannel, TcpChannel, FdChannel]


@pytest.fixture
def pair(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start()
        pair.src.stop()
        pair.allow_convergence()
        yield pair


@pytest.mark.parametrize("make", [*LIVE, ExecChannel], ids=lambda c: c.name)
def test_each_channel_carries_a_migration(pair: MigrationPair, make: Callable[[], Channel]) -> None:
    pair.migrate(make())
    pair.wait_for_completion()
    verify_migration(pair)


@pytest.mark.parametrize("make", LIVE, ids=lambda c: c.name)
def test_the_proxy_joins_any_live_channel(pair: MigrationPair, make: Callable[[], Channel]) -> None:
    link = FaultyChannel(make())
    pair.migrate(link)
    pair.wait_for_completion()
    verify_migration(pair)
    assert link.proxy is not None and link.proxy.forwarded > 1 * MiB


def test_a_stalled_link_holds_the_migration_until_resumed(pair: MigrationPair) -> None:
    pair.src.set_parameters({"max-bandwidth": 32 * MiB})  # a few seconds for 150 MiB
    link = FaultyChannel(UnixChannel())
    pair.migrate(link)
    wait_for(
        lambda: ((link.proxy.forwarded if link.proxy else 0) > 1 * MiB, None),
        what="the first MiB through the proxy",
        timeout=30,
    )
    link.stall()
    held = link.proxy.forwarded if link.proxy else 0
    status = pair.src.wait_for_status("active", timeout=1)["status"]
    assert status == "active" and (link.proxy.forwarded if link.proxy else 0) == held
    link.resume()
    pair.allow_convergence()
    pair.wait_for_completion()
    verify_migration(pair)


def test_a_file_has_no_stream_for_the_proxy() -> None:
    with pytest.raises(ConfigError, match="a live stream"):
        FaultyChannel(ExecChannel())
