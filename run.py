"""Entry point: `python run.py` trains the embedded default; `python run.py --help` for more."""

import sys

from agent.allocator import restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages(__file__)
    from agent.runner.cli import main

    sys.exit(main())
