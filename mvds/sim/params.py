"""Scenario parameters: typed, defaulted, settable from the CLI or TOML.

Each scenario declares its parameters as :class:`Param` objects; values
arrive as strings (``key=value`` on the command line) or as TOML values, and
:func:`resolve` turns them into checked Python values with one clear error
message for anything wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` is int, float, str, bool, or a list of those."""

    name: str
    default: Any
    help: str
    kind: str = "float"
    """``int``, ``float``, ``str``, ``bool``, ``ints``, ``floats`` or ``strs``."""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


_SCALARS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _bool,
}


def _convert_scalar(param: Param, kind: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = _SCALARS[kind](value.strip())
        except ValueError:
            raise ValueError(f"{param.name}: expected {kind}, got {value!r}") from None
    elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    elif kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        pass
    elif kind == "bool" and isinstance(value, bool):
        pass
    elif kind == "str" and isinstance(value, str):
        pass
    else:
        raise ValueError(f"{param.name}: expected {kind}, got {value!r}")
    if param.choices and value not in param.choices:
        raise ValueError(f"{param.name}: {value!r} is not one of {', '.join(param.choices)}")
    if param.minimum is not None and value < param.minimum:
        raise ValueError(f"{param.name}: {value} is below the minimum {param.minimum:g}")
    if param.maximum is not None and value > param.maximum:
        raise ValueError(f"{param.name}: {value} is above the maximum {param.maximum:g}")
    return value


def convert(param: Param, value: Any) -> Any:
    """Check and convert one value (a string, or a TOML value) for ``param``."""
    if param.kind in ("ints", "floats", "strs"):
        scalar = param.kind[:-1]
        if isinstance(value, str):
            items: list[Any] = [item for item in value.split(",") if item.strip()]
        elif isinstance(value, list):
            items = value
        else:
            items = [value]
        if not items:
            raise ValueError(f"{param.name}: needs at least one value")
        return [_convert_scalar(param, scalar, item) for item in items]
    return _convert_scalar(param, param.kind, value)


def resolve(params: list[Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overridden by ``given``; unknown names are an error."""
    known = {param.name: param for param in params}
    for name in given:
        if name not in known:
            names = ", ".join(sorted(known)) or "none"
            raise ValueError(f"unknown parameter {name!r} (parameters: {names})")
    values = {}
    for param in params:
        values[param.name] = convert(param, given[param.name]) if param.name in given else param.default
    return values


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["nodes=10", "loss=0.1"]`` -> ``{"nodes": "10", "loss": "0.1"}``."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        out[name.strip().replace("-", "_")] = value
    return out
