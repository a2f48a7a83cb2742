"""Entry point: `python run.py` trains the embedded default; `python run.py --help` for more."""

import sys

from agent.runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
