"""Build of descend's compiled part: the fused CPU kernels, ``descend.kernels._fused`` (C11 + OpenMP).

Nothing is tuned to the build machine: the loops are compiled for AVX-512, AVX2 and the x86-64 baseline inside one
module (``#pragma GCC target`` regions) and the best one the CPU supports is chosen at run time. The flags keep every
floating-point operation as written: no fast-math, no FMA contraction. If the extension cannot be built, descend
still installs and runs its reference path.
"""

from __future__ import annotations

import glob
import importlib
import os
import sys
import types
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = os.path.join("src", "descend", "kernels")
GENERATED = os.path.join("build", "generated")
SOURCES = ["_fused.c", "parse.c", "finite.c", "gather.c", "fork.c", "spans.c", "lowbit.c", "torch_ptr.cpp"]
HEADERS = ["common.h", "parse.h", "finite.h", "fork.h", "gather.h", "spans.h", "instances.h", "combos.h", "lowbit.h",
           "lowbit_impl.h", "lowbit_types.h", "torch_ptr.h", "gather_check.h"]


def kernel_interface() -> types.ModuleType:
    """descend/kernels/_layout.py, the table of every kernel's values, flags and slots, loaded without importing the
    package (it needs only the standard library and descend.algorithms)."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "descend")
    for name, path in (("descend", root), ("descend.kernels", os.path.join(root, "kernels"))):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [path]
            sys.modules[name] = package
    return importlib.import_module("descend.kernels._layout")


def generate() -> list[str]:
    """Write interface.h and one instantiation file per loop body into build/generated; return the C files."""
    layout = kernel_interface()
    os.makedirs(GENERATED, exist_ok=True)
    files = {"interface.h": layout.header()}
    files.update({f"{k.body}.c": layout.source(k.body) for k in layout.bodies()})
    for name, text in files.items():
        path = os.path.join(GENERATED, name)
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)
    return [os.path.join(GENERATED, f"{k.body}.c") for k in layout.bodies()]


BODIES = generate()
FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
STANDARD = {".c": "-std=c11", ".cpp": "-std=c++17"}


class BuildExt(build_ext):
    """Compiles the kernel sources in parallel, and lets the install go on without them if the build fails."""

    def build_extension(self, ext: Extension) -> None:
        compiler = self.compiler
        original = compiler.compile

        def compile_one(src: str, args: tuple, kwargs: dict) -> list[str]:
            flags = [*kwargs.get("extra_postargs", []), STANDARD[os.path.splitext(src)[1]]]
            return original([src], *args, **{**kwargs, "extra_postargs": flags})

        def compile_parallel(sources: list[str], *args: object, **kwargs: object) -> list[str]:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                parts = list(pool.map(lambda src: compile_one(src, args, kwargs), sources))
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
            sources=[os.path.join(KERNELS, name) for name in SOURCES] + BODIES,
            depends=[os.path.join(KERNELS, name) for name in HEADERS]
            + sorted(glob.glob(os.path.join(KERNELS, "bodies", "*.h")))  # a body's own headers too
            + [os.path.join(GENERATED, "interface.h")],
            include_dirs=[KERNELS, GENERATED],
            extra_compile_args=FLAGS,
            extra_link_args=["-fopenmp"],
            libraries=["stdc++"],  # torch_ptr.cpp catches C++ exceptions
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
