"""`python -m harness.bench` (`make bench`): what the harness costs, measured side by side (see plans.bench)."""

import sys

from .plans.bench import limits, main, tables  # noqa: F401  (the bench's views, for scripts and tests)

if __name__ == "__main__":
    sys.exit(main())
