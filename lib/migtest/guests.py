"""Where the committed guest binaries are.

``setup.py`` installs the top-level ``guests/`` folder as the package
``migtest_guests``, so the same lookup works from a source tree, an editable
install and a plain one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import Unavailable


def guest_path(arch: str, filename: str) -> Path:
    """The guest binary ``filename`` of ``arch``.

    :raise Unavailable: the binary is not installed (a broken install).
    """
    try:
        folder = resources.files("migtest_guests")
    except ModuleNotFoundError:
        raise Unavailable("the guest binaries (package migtest_guests) are not installed") from None
    path = Path(str(folder / arch / filename))
    if not path.is_file():
        raise Unavailable(f"no {arch} guest: {path} is missing")
    return path
