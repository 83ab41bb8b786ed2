"""Links from a report page to the files of the jobs it shows.

A page is read where it was written, or after the page and its jobs were
copied together elsewhere (archived by CI, served by a web server, moved
to another disk).  Only a relative link that stays inside the jobs'
directories survives that: an absolute one names the machine it was made
on, and one that leaves the job directories (a job's symlink to the
original results, a log directory Avocado recorded somewhere else) leads
to whatever is, or is not, at that place in the copy.  So the page links
only to files that are really inside one of its jobs, by a path relative
to the page's own directory, and says what it could not link to.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import quote


class Linker:
    """Makes the links of one page.

    :param page_dir: the directory the page is written to.
    :param roots: the job directories the page may link into.
    """

    def __init__(self, page_dir: Path, roots: Iterable[Path]) -> None:
        # The browser resolves a relative link against the page's address,
        # as written: lexically, not through symlinks.  Whether a file is
        # inside a job is a question about where it really is.
        self.page_dir = Path(os.path.abspath(page_dir))
        self.roots = [root.resolve() for root in roots]

    def inside(self, path: Path) -> bool:
        """Whether ``path`` really is (symlinks followed) in one of the jobs."""
        real = path.resolve()
        return any(real == root or root in real.parents for root in self.roots)

    def href(self, path: Path) -> Optional[str]:
        """The escaped relative URL of ``path``, or None when it would break
        in a copy: it is missing, or not inside one of the jobs."""
        if not path.is_file() or not self.inside(path):
            return None
        relative = os.path.relpath(os.path.abspath(path), self.page_dir)
        # Quoted, so that a ':' in a test's name is no URL scheme.
        return escape(quote(Path(relative).as_posix()))
