"""Exception groups (trio's nurseries raise them): the one helper to look inside."""

from __future__ import annotations


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions that are not groups inside ``exc``, depth first, in
    order (``[exc]`` itself when it is not a group).  A caller that wants
    "the" error of a group takes the only leaf, or the first to report."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    out: list[BaseException] = []
    for inner in exc.exceptions:
        out.extend(leaves(inner))
    return out
