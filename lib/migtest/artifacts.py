"""The names of the files the suite leaves in a test's or a job's results.

They are kept in one place because they are read far from where they are
written: a test writes them while it runs (:mod:`migtest.test`,
:mod:`migtest.machine`), and the job report (:mod:`migtest.report`) and
``scripts/bench`` look for them on disk afterwards.  A name changed on one
side only would break nothing loudly: the reader would just find no file
and report less.  So both sides import the name from here.

Avocado's own names (``debug.log``, ``results.json``, a test's ``data/``
output directory) are Avocado's, and not repeated here.
"""

from __future__ import annotations

#: In a test's output directory: QEMU's numbers about its migrations over
#: time (see :mod:`migtest.metrics`)...
METRICS_FILE = "migration.json"
#: ...and their timeline, drawn (see :mod:`migtest.report.timeline`).
PLOT_FILE = "migration.svg"
#: In a test's log directory, next to its ``debug.log``: the whole QMP
#: conversation of every QEMU of the test (see :mod:`migtest.qmp`).
TRACE_FILE = "qmp.log"
#: In a job's results directory: the page of the whole job (see
#: :mod:`migtest.report.jobpage`).
REPORT_FILE = "migration-report.html"


def console_file(machine: str) -> str:
    """The file of a QEMU's guest serial console.

    QEMU writes it in its work directory; the test copies it to its output
    directory as it ends, with every other ``*.log`` there: keep the suffix.

    :param machine: the QEMU's short name (``src``, ``dst``).
    """
    return f"{machine}-console.log"


def output_file(machine: str) -> str:
    """The file of a QEMU's own stdout and stderr; like :func:`console_file`.

    :param machine: the QEMU's short name (``src``, ``dst``).
    """
    return f"{machine}.log"
