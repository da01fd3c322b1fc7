"""Build of descend's compiled part: the fused CPU kernels, ``descend.kernels._fused`` (C11 + OpenMP).

Nothing is tuned to the build machine: the loops are compiled for AVX-512, AVX2 and the x86-64 baseline inside one
module (``#pragma GCC target`` regions) and the best one the CPU supports is chosen at run time. The flags keep every
floating-point operation as written: no fast-math, no FMA contraction. If the extension cannot be built, descend
still installs and runs its reference path.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = os.path.join("src", "descend", "kernels")
SOURCES = ["_fused.c", "sgd.c", "rms.c", "adam.c", "nadam.c", "roofline.c", "finite.c", "gather.c", "fork.c"]
HEADERS = [
    "common.h",
    "finite.h",
    "fork.h",
    "gather.h",
    "instances.h",
    "combos.h",
    "sgd_loops.h",
    "rms_loops.h",
    "adam_loops.h",
    "nadam_loops.h",
    "roofline_loops.h",
]
FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-std=c11"]


class BuildExt(build_ext):
    """Compiles the kernel sources in parallel, and lets the install go on without them if the build fails."""

    def build_extension(self, ext: Extension) -> None:
        compiler = self.compiler
        original = compiler.compile

        def compile_parallel(sources: list[str], *args: object, **kwargs: object) -> list[str]:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                parts = list(pool.map(lambda src: original([src], *args, **kwargs), sources))
            return [obj for part in parts for obj in part]

        compiler.compile = compile_parallel
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any compiler failure leaves the reference path
            print(f"descend: the fused kernels were not built ({exc}); the reference path will run", file=sys.stderr)
        finally:
            compiler.compile = original


setup(
    ext_modules=[
        Extension(
            "descend.kernels._fused",
            sources=[os.path.join(KERNELS, name) for name in SOURCES],
            depends=[os.path.join(KERNELS, name) for name in HEADERS],
            extra_compile_args=FLAGS,
            extra_link_args=["-fopenmp"],
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
