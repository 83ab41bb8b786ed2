"""The exceptions of migtest.

Every exception the library raises on purpose derives from
:class:`MigtestError`::

    MigtestError
     +-- ConfigError (ValueError)    a bad parameter: names it and what it accepts
     +-- Unavailable                 something the host or QEMU lacks: CANCEL
     +-- LaunchError                 QEMU did not start
     +-- QMPError                    QEMU answered a command with an error
     +-- QMPConnectionLost           the monitor went away
     +-- StateError                  the library was used in the wrong order
     +-- WaitTimeout                 a bounded wait expired
     +-- CheckFailure (AssertionError)  a verification found the guest wrong

Avocado reports an :class:`AssertionError` as FAIL and anything else as
ERROR, so only :class:`CheckFailure` makes a test FAIL: the migration did the
wrong thing.  The others mean the test could not find out.
"""

from __future__ import annotations

from typing import Optional, Sequence


class MigtestError(Exception):
    """Root of the exceptions raised by migtest."""


class ConfigError(MigtestError, ValueError):
    """A parameter has a value the suite cannot use."""

    def __init__(self, parameter: str, value: object, accepted: str) -> None:
        #: The name of the offending parameter, as the user spells it.
        self.parameter = parameter
        self.value = value
        self.accepted = accepted
        super().__init__(
            f"invalid value {value!r} for parameter '{parameter}': accepted {accepted}"
        )


class Unavailable(MigtestError):
    """The host or the QEMU under test lacks something a test needs.

    Tests turn this into a CANCEL that carries the message, so a missing
    binary, accelerator or QEMU feature is never a silent pass.

    :ivar expected: whether it should have been there: a binary or an
        accelerator the suite was set up for, or a feature of the QEMU
        version under test.  Strict mode makes only those an ERROR: a
        feature QEMU added after the version under test is a plain CANCEL.
    """

    def __init__(self, message: str, expected: bool = True) -> None:
        super().__init__(message)
        self.expected = expected


class LaunchError(MigtestError):
    """QEMU exited, or never greeted us, while starting."""

    def __init__(
        self, reason: str, cmdline: Sequence[str], exitcode: Optional[int], output: str
    ) -> None:
        self.reason = reason
        self.cmdline = list(cmdline)
        self.exitcode = exitcode
        self.output = output
        super().__init__(
            f"QEMU failed to start: {reason} (exit code {exitcode})\n"
            f"command line: {' '.join(self.cmdline)}\n"
            f"output:\n{output.rstrip() or '(none)'}"
        )


class QMPError(MigtestError):
    """A QMP command returned an error.

    :ivar command: the command name.
    :ivar error_class: QMP's error class, e.g. ``CommandNotFound``.
    :ivar desc: QMP's human readable description.
    """

    def __init__(self, machine: str, command: str, error_class: str, desc: str) -> None:
        self.machine = machine
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"{machine}: '{command}' failed: {error_class}: {desc}")


class QMPConnectionLost(MigtestError):
    """The QMP connection broke, usually because QEMU exited."""


class StateError(MigtestError):
    """An operation was asked for in a state that does not allow it."""


class WaitTimeout(MigtestError):
    """A bounded wait expired.

    :ivar what: what was being waited for, in words.
    :ivar timeout: how long we waited, in seconds.
    :ivar last_seen: the last state observed before giving up.
    :ivar cut_short: why the wait was shorter than asked, or empty.
    """

    def __init__(self, what: str, timeout: float, last_seen: object, cut_short: str = "") -> None:
        self.what = what
        self.timeout = timeout
        self.last_seen = last_seen
        self.cut_short = cut_short
        cut = f" (cut short: {cut_short})" if cut_short else ""
        super().__init__(
            f"timed out after {round(timeout, 3):g} s{cut} waiting for {what}; "
            f"last seen: {last_seen!r}"
        )


class CheckFailure(MigtestError, AssertionError):
    """A verification found the guest, or QEMU's behaviour, wrong.

    :ivar problems: the separate things found wrong, when one check found
        several (one per parameter, say): a known QEMU finding explains
        the failure only if it explains every one of them.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)
