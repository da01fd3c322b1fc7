"""A fused step allocates no params-sized temporaries: over 100 steps, the peak resident memory stays at what is
resident between steps (params, grad, state). Linux only (it resets and reads the peak in /proc/self)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from descend import kernels

pytestmark = [
    pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1]),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resets and reads the peak in /proc/self"),
]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import descend

    name = sys.argv[1]
    n = 8_000_000  # 32 MB per float32 array
    params = [np.zeros(n, dtype=np.float32)]
    grad = np.full(n, 0.5, dtype=np.float32)
    kwargs = {"adam": {"amsgrad": True, "weight_decay": 0.01}, "sgd": {"momentum": 0.9, "nesterov": True},
              "rmsprop": {"centered": True, "momentum": 0.5}}.get(name, {})
    opt = descend.OPTIMIZERS[name](params, backend="fused", **kwargs)
    opt.step([grad])  # allocates the state

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to what is resident now
        f.write("5")
    before = status("VmRSS")  # the params, the grad and the state, in KiB
    for _ in range(100):
        opt.step([grad])
    after = status("VmHWM")
    print(after - before)  # the peak over the 100 steps above what is resident between them
    """
)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adadelta", "radam"])
def test_peak_memory_is_flat_over_100_steps(name: str) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, name], capture_output=True, text=True, check=True)
    growth_kib = int(out.stdout.strip().splitlines()[-1])
    assert growth_kib < 4 * 1024, f"{name}: peak RSS grew by {growth_kib} KiB over 100 steps (one array is 31250 KiB)"


def test_the_reference_would_show_up() -> None:
    """The measurement sees a params-sized temporary: the reference path allocates several per step."""
    script = SCRIPT.replace('backend="fused"', 'backend="reference"')
    out = subprocess.run([sys.executable, "-c", script, "adam"], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) > 16 * 1024
