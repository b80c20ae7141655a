"""`python -m harness` runs the command line."""

import sys

from harness.cli import main

if __name__ == "__main__":  # spawned tool workers import this module too
    sys.exit(main())
