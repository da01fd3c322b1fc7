"""A param group's hyperparameters through the arguments of ``descend::step`` (see :mod:`descend.torch._compiled`).

A custom operator takes ints, floats, strings, tensors and lists of one of these, not a dict of mixed values. The
trace writes each group's values, name by name, as codes in an ``int[]`` (what each value is, a string's characters,
a tuple's length), its numbers in a list that reaches the operator as one float64 tensor (so that Dynamo can make a
changed float ``lr`` a graph input instead of compiling again for every value), and its tensors (a tensor ``lr`` or
``betas``) in a ``Tensor[]``. The operator reads them back into the values the trace saw, and validates them as the
eager step validates a group's.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["decode", "encode"]

# What a value is, in the codes (each followed by what it needs: a string's length and characters, a sequence's
# length and items).
_ABSENT, _BOOL, _INT, _FLOAT, _TENSOR, _NONE, _STR, _TUPLE, _LIST = range(9)


def encode(group: dict[str, Any], names: tuple[str, ...], codes: list[int], numbers: list, tensors: list) -> bool:
    """Append the group's values of ``names``; False if one of them cannot be carried (then the step is not handed
    to the operator)."""
    for name in names:
        if name not in group:
            codes.append(_ABSENT)
        elif not _encode(group[name], codes, numbers, tensors):
            return False
    return True


def _encode(value: Any, codes: list[int], numbers: list, tensors: list) -> bool:
    if isinstance(value, torch.Tensor):
        codes.append(_TENSOR)
        tensors.append(value)
    elif value is None:
        codes.append(_NONE)
    elif isinstance(value, bool):
        codes.append(_BOOL)
        numbers.append(1.0 if value else 0.0)
    elif isinstance(value, int) and abs(value) < 2**53:  # exact in a float64
        codes.append(_INT)
        numbers.append(float(value))
    elif isinstance(value, float):
        codes.append(_FLOAT)
        numbers.append(value)
    elif isinstance(value, str):
        codes += [_STR, len(value), *(ord(c) for c in value)]
    elif isinstance(value, (tuple, list)):
        codes += [_TUPLE if isinstance(value, tuple) else _LIST, len(value)]
        return all(_encode(v, codes, numbers, tensors) for v in value)
    else:
        return False
    return True


class _Reader:
    """Reads back what :func:`encode` wrote."""

    def __init__(self, codes: list[int], numbers: list[float], tensors: list[torch.Tensor]) -> None:
        self.codes, self.numbers, self.tensors = codes, numbers, tensors
        self.at = self.number_at = self.tensor_at = 0

    def code(self) -> int:
        self.at += 1
        return self.codes[self.at - 1]

    def value(self) -> Any:
        code = self.code()
        if code in (_BOOL, _INT, _FLOAT):
            self.number_at += 1
            number = self.numbers[self.number_at - 1]
            return bool(number) if code == _BOOL else int(number) if code == _INT else number
        if code == _TENSOR:
            self.tensor_at += 1
            return self.tensors[self.tensor_at - 1]
        if code == _NONE:
            return None
        if code == _STR:
            return "".join(chr(self.code()) for _ in range(self.code()))
        items = [self.value() for _ in range(self.code())]
        return tuple(items) if code == _TUPLE else items


_VALIDATED: dict[tuple, tuple[list, list[int]]] = {}  # (class, codes, numbers) -> decode's answer, without tensors


def decode(
    cls: Any, names: tuple[str, ...], codes: list[int], numbers: list[float], tensors: list[torch.Tensor]
) -> tuple[list, list[int]]:
    """Each group's hyperparameters, validated by ``cls.from_group`` (once for each set of values without a tensor),
    and its number of parameters with a gradient. ``codes`` starts with the number of groups; each group's values are
    followed by its number of parameters with a gradient.

    Raises:
        ValueError, TypeError: a value is invalid, with the message the eager step gives.
    """
    key = (cls, tuple(codes), tuple(numbers)) if not tensors else None
    known = _VALIDATED.get(key) if key is not None else None
    if known is not None:
        return known
    reader = _Reader(codes, numbers, tensors)
    hps, sizes = [], []
    for _ in range(reader.code()):
        found = {}
        for name in names:
            if reader.codes[reader.at] == _ABSENT:
                reader.at += 1
            else:
                found[name] = reader.value()
        hps.append(cls.from_group(found))
        sizes.append(reader.code())
    if key is not None:
        if len(_VALIDATED) >= 256:  # a float lr changed on every step: let the old values go
            _VALIDATED.clear()
        _VALIDATED[key] = (hps, sizes)
    return hps, sizes
