"""The Avocado base class of the migration tests.

It reads the parameters once, turns what the host or QEMU lacks into a
CANCEL (or an ERROR in strict mode), and shuts every QEMU down in tearDown,
so test methods only say what the scenario is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn, Optional

from avocado import Test

from .errors import Unavailable
from .pair import MigrationPair
from .params import SuiteParams
from .verify import verify_migration


class MigrationTest(Test):
    """A test that migrates the test guest from a source to a destination QEMU.

    Parameters (variants files or ``-p name=value``): ``arch``, ``accel``
    (``tcg``, ``kvm`` or ``auto``), ``qemu_bin``, ``qemu_bin_src``,
    ``qemu_bin_dst``, ``strict``.  See README.rst.

    :avocado: disable
    """

    #: Seconds before Avocado interrupts a test; every wait inside is shorter.
    timeout = 300

    pair: MigrationPair

    def setUp(self) -> None:
        self._strict: Optional[bool] = None
        try:
            self.suite = SuiteParams.from_params(self.params)
        except Unavailable as exc:
            self.unavailable(str(exc))
        self.pair = MigrationPair(self.suite, Path(self.workdir))

    def tearDown(self) -> None:
        pair = getattr(self, "pair", None)
        if pair is not None:
            try:
                pair.close()
            finally:
                self._keep_logs()

    def _keep_logs(self) -> None:
        """Keep the consoles and QEMU's output with the results: workdir is removed."""
        for log in Path(self.workdir).glob("*.log"):
            shutil.copy(log, self.outputdir)

    def unavailable(self, reason: str) -> NoReturn:
        """End the test because something it needs is missing.

        A CANCEL, or an ERROR in strict mode, where nothing may be skipped
        (a CANCEL leaves a job green).
        """
        if self._strict is None:
            self._strict = SuiteParams.strict_from(self.params, os.environ)
        if self._strict:
            self.error(f"strict mode: {reason}")
        self.cancel(reason)
        raise AssertionError("unreachable: cancel() returned")

    def start_pair(self, *, dst_paused: bool = True) -> MigrationPair:
        """Start source and destination; return when the guest runs."""
        self.pair.start(dst_paused=dst_paused)
        return self.pair

    def require_capabilities(self, *names: str) -> None:
        """Cancel unless both QEMUs know the migration capabilities ``names``."""
        try:
            self.pair.src.require_capabilities(names)
            self.pair.dst.require_capabilities(names)
        except Unavailable as exc:
            self.unavailable(str(exc))

    def verify_migration(self) -> None:
        """Apply every check a successful migration must pass."""
        verify_migration(self.pair)
