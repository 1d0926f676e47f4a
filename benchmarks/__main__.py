"""``python -m benchmarks``: run the suite (``--help`` lists the options)."""

import sys

from .suite import main

sys.exit(main())
