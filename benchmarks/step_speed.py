"""Step speed of descend's optimizers against torch.optim, naive NumPy and optax; see :mod:`descend.bench`.

Examples:
    python benchmarks/step_speed.py --cases flat-1e7 2000x1000 --algorithms adam --repeats 9
    python benchmarks/step_speed.py --out docs/benchmarks.md
"""

from __future__ import annotations

import sys

from descend.bench import main

if __name__ == "__main__":
    sys.exit(main())
