"""What a QEMU binary said of itself, kept for the other tests of the job.

Avocado runs every test in a process of its own, and every test asked the
same binaries the same questions: ``-machine help`` and its kin (four QEMU
starts, 0.1-0.15 s) and, where a test needs to know a command's arguments
or a type's values, ``query-qmp-schema`` (200 KB a side, 0.2-0.4 s with
guests running beside it).  Their answers depend on the binary alone, so
the first test to ask writes them into a directory the job's tests share
(Avocado's ``teststmpdir``, removed with the job), and the others read
them from there.

An answer is filed under the binary's path, size, modification and
change times and inode: a binary rebuilt or replaced during the job is
asked again.  A
file that cannot be read or parsed is as good as none (the question is
asked again, and the answer written anew), and one test writing while
another reads is safe: answers are written to a file of their own, then
renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

_log = logging.getLogger(__name__)

#: How the files of answers are named in the shared directory.
FILE_PREFIX = "migtest-probe-"

#: Where answers are shared; ``None``: each process asks for itself.
_directory: Optional[Path] = None


def share_in(directory: Optional[Path]) -> None:
    """Share answers through ``directory`` from now on; ``None`` stops sharing.

    The directory must outlive every test that reads it and go with the
    job: a :class:`~migtest.test.MigrationTest` gives Avocado's
    ``teststmpdir``.  Nothing else removes the files.
    """
    global _directory
    _directory = directory


def answer_file(binary: str, question: str) -> Optional[Path]:
    """Where the answer of ``binary`` to ``question`` is kept; ``None`` if nowhere.

    Nowhere when no directory is shared or ``binary`` cannot be examined
    (then it cannot be told apart from a rebuilt one).
    """
    if _directory is None:
        return None
    try:
        path = os.path.realpath(binary)
        status = os.stat(path)
    except OSError:
        return None
    stamps = (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)
    key = "\0".join((path, *map(str, stamps), question))
    return _directory / f"{FILE_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def remembered(binary: str, question: str, ask: Callable[[], Any]) -> Any:
    """``ask()``'s answer, or the one a test of this job got for the same question.

    :param binary: the QEMU binary the question is about.
    :param question: names the question, e.g. ``query-qmp-schema``; the
        same name must always mean the same question.
    :param ask: asks the binary; its answer must be JSON (lists, not
        tuples, come back).  An exception it raises is not remembered.
    """
    where = answer_file(binary, question)
    if where is not None:
        try:
            with open(where, encoding="utf-8") as stored:
                answer = json.load(stored)
        except (OSError, ValueError):
            pass
        else:
            _log.debug("%s of %s: as a test of this job got it (%s)", question, binary, where)
            return answer
    answer = ask()
    if where is not None:
        _store(where, answer)
    return answer


def _store(where: Path, answer: Any) -> None:
    """Write ``answer`` to ``where`` whole or not at all; failing to is only slower."""
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{where.name}.", suffix=".tmp", dir=where.parent
        )
    except OSError as exc:
        _log.debug("cannot keep an answer in %s: %s", where.parent, exc)
        return
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stored:
            json.dump(answer, stored)
        os.replace(temporary, where)
    except (OSError, TypeError, ValueError) as exc:
        _log.debug("cannot keep an answer in %s: %s", where, exc)
    finally:  # an interrupted test too: only whole answers are left
        try:
            os.unlink(temporary)
        except OSError:  # renamed into place (or the directory went with the job)
            pass
