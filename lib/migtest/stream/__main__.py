"""``python -m migtest.stream FILE``: the same as ``migtest-stream``."""

import sys

from . import main

sys.exit(main())
