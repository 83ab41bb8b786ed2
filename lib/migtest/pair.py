"""A source and a destination QEMU, and the migration between them."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Optional, Sequence, Type, Union

from .arch import ArchProfile
from .endpoint import Endpoint
from .errors import StateError
from .machine import QEMUMachine
from .params import SuiteParams
from .transport import Transport, make_transport
from .wait import wait_for

#: Seconds the guest may take from QEMU's start to its first pass.  Under a
#: software KVM, SeaBIOS alone takes 4-5 s.
BOOT_TIMEOUT = 60.0

#: With a 1 ms downtime limit no stop-and-copy can fit: the guest dirties
#: its whole 99 MiB range every few milliseconds.
NON_CONVERGING = {"downtime_limit": 1, "max_bandwidth": 1 << 30}
#: With 1 GiB/s and 30 s of allowed downtime, any guest here converges.
CONVERGING = {"downtime_limit": 30_000, "max_bandwidth": 1 << 30}


class MigrationPair:
    """Source and destination machines for one architecture profile.

    :param params: what to run (profile, accelerator, binaries).
    :param workdir: private directory for sockets, consoles and dumps.

    Use as a context manager, or call :meth:`close`: both machines are shut
    down in every outcome.
    """

    def __init__(self, params: SuiteParams, workdir: Path) -> None:
        self.params = params
        self.profile: ArchProfile = params.profile
        self.workdir = Path(workdir)
        self._src: Optional[Endpoint] = None
        self._dst: Optional[Endpoint] = None
        self.transport: Optional[Transport] = None
        self._log = logging.getLogger("migtest.pair")

    @property
    def src(self) -> Endpoint:
        """The source side."""
        if self._src is None:
            raise StateError("the pair has not been started")
        return self._src

    @property
    def dst(self) -> Endpoint:
        """The destination side."""
        if self._dst is None:
            raise StateError("the pair has not been started")
        return self._dst

    def _machine(self, name: str, binary: str, extra: Sequence[str]) -> QEMUMachine:
        guest = self.workdir / self.profile.guest
        if not guest.exists():
            shutil.copyfile(self.profile.guest_file(), guest)
        args = [*self.profile.qemu_args(self.params.accel, guest), *extra]
        return QEMUMachine(binary, args, name=name, workdir=self.workdir)

    def start(self, *, dst_paused: bool = True, dst_args: Sequence[str] = ()) -> None:
        """Start both machines and wait until the guest runs on the source.

        :param dst_paused: start the destination with ``-S``, so it stays
            paused after the migration and its RAM can be compared with the
            source's before it runs.
        """
        if self._src is not None:
            raise StateError("start() called twice")
        source = self._machine("src", self.params.qemu_bin_src, [])
        self._src = Endpoint(source)
        source.launch()
        incoming = ["-incoming", "defer", *(["-S"] if dst_paused else []), *dst_args]
        destination = self._machine("dst", self.params.qemu_bin_dst, incoming)
        self._dst = Endpoint(destination)
        destination.launch()
        self.wait_for_guest(source)

    def wait_for_guest(self, machine: QEMUMachine, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until the guest on ``machine`` has completed a pass ('B')."""
        wait_for(
            lambda: ("B" in machine.console_text(), machine.console_text()[-40:]),
            what=f"the guest on {machine.name} to print 'B' (console tail shown)",
            timeout=timeout,
        )

    def set_capabilities(self, **capabilities: bool) -> None:
        """Set migration capabilities on both sides."""
        for side in (self.src, self.dst):
            side.set_capabilities(**capabilities)

    def prevent_convergence(self) -> None:
        """Make the source unable to finish until :meth:`allow_convergence`."""
        self.src.set_parameters(**NON_CONVERGING)

    def allow_convergence(self) -> None:
        """Let the source finish the migration."""
        self.src.set_parameters(**CONVERGING)

    def migrate(self, transport: Union[str, Transport], **migrate_args: Any) -> Transport:
        """Make the destination listen and start migrating to it."""
        if isinstance(transport, str):
            transport = make_transport(transport, self.workdir)
        self.transport = transport
        self._log.debug("migrating over %s", transport.name)
        transport.listen(self.dst)
        self.src.machine.cmd("migrate", uri=transport.source_uri(self.dst), **migrate_args)
        return transport

    def wait_for_completion(self) -> Dict[str, Any]:
        """Wait until both sides report the migration completed.

        :return: the source's final ``query-migrate`` answer.
        :raise MigtestError: a side reached ``failed`` or ``cancelled``.
        """
        doomed = ("failed", "cancelled")
        info = self.src.wait_for_status("completed", fail_on=doomed)
        self.dst.wait_for_status("completed", fail_on=doomed)
        return info

    def close(self) -> None:
        """Shut both machines down; safe to call in every state, and twice."""
        try:
            if self._src is not None:
                self._src.machine.shutdown()
        finally:
            if self._dst is not None:
                self._dst.machine.shutdown()

    def __enter__(self) -> MigrationPair:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
