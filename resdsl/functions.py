"""The built-in functions of the expression language, defined once: `max(planes // 4, 8)`,
`make_divisible(c * 0.0625, 8, round_limit = 0.0)`.

Each is a pure function of numbers (or a list, for `len`, `sum`, `min`, `max`); elaborate.py
binds the arguments, checks their types (E304) and the function's own domain (E301), and
calls it. None of them runs user text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

VARIADIC = ("*values",)


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[str, ...]          # VARIADIC: any number of numbers, or one list
    defaults: dict[str, Any]
    doc: str
    fn: Callable[..., Any]
    takes: str = "numbers"           # its arguments: numbers, a list, or a list of numbers
    domain: Callable[..., str | None] = lambda *args: None  # why the values are out of it


def make_divisible(v, divisor=8, min_value=0, round_limit=0.9):
    """timm's channel rounding (timm.layers.make_divisible): v to the nearest multiple of
    `divisor` (at least `min_value`, 0 meaning the divisor), and one divisor more where that
    would lose more than 1 - round_limit of v."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    Function("min", VARIADIC, {}, "the smallest of its arguments (or of one list)", min),
    Function("max", VARIADIC, {}, "the largest of its arguments (or of one list)", max),
    Function("abs", ("x",), {}, "|x|", abs),
    Function("floor", ("x",), {}, "the largest integer <= x", math.floor),
    Function("ceil", ("x",), {}, "the smallest integer >= x", math.ceil),
    Function("round", ("x",), {}, "x to the nearest integer, halves to even (Python's round)",
             round),
    Function("int", ("x",), {}, "x truncated toward zero (Python's int)", int),
    Function("log2", ("x",), {}, "the base-2 logarithm of x > 0, a float", math.log2,
             domain=lambda x: None if x > 0 else f"log2 of {x}: the argument must be positive"),
    Function("make_divisible", ("v", "divisor", "min_value", "round_limit"),
             {"divisor": 8, "min_value": 0, "round_limit": 0.9},
             "timm's channel rounding: v to a multiple of divisor, never below round_limit * v",
             make_divisible,
             domain=lambda v, divisor, *rest: None if divisor > 0 else
             f"make_divisible's divisor must be positive, got {divisor}"),
    Function("len", ("list",), {}, "the number of items of a list", len, takes="list"),
    Function("sum", ("list",), {}, "the sum of a list of numbers", sum, takes="list of numbers"),
)}
