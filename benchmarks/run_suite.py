"""Entry point of the AD benchmark suite (benchmarks/suite/):

    python benchmarks/run_suite.py --quick     # every problem, small sizes, ~2 minutes
    python benchmarks/run_suite.py             # the full run
    python benchmarks/run_suite.py --help
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.suite.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
