"""Hard limits on what a control message may hold, and the bounded text used to quote it.

A peer controls every byte of a request, so nothing derived from one may grow without bound:
msgpack happily decodes a list nested a thousand deep from one kilobyte, and Python's `repr` of
it raises RecursionError. `check_nesting` refuses such values right after decoding, and `brief`
is the only way a received value is quoted in a reply or a log line. Private to `protocol` and
the control sockets.
"""

from __future__ import annotations

import reprlib
from typing import Any

MAX_NESTING = 16  # the protocol's deepest legitimate value is 3 (envelope → args → value)
_BRIEF_CHARS = 120

_brief_repr = reprlib.Repr()
_brief_repr.maxlevel = 3
_brief_repr.maxlist = _brief_repr.maxtuple = _brief_repr.maxdict = 6
_brief_repr.maxstring = _brief_repr.maxother = 60
_brief_repr.maxlong = 40


def brief(value: Any) -> str:
    """`repr(value)`, cut to at most ~120 characters and 3 levels; never raises."""
    try:
        text = _brief_repr.repr(value)
    except Exception:  # a hostile __repr__ cannot reach us from msgpack, but stay a boundary
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _BRIEF_CHARS else text[: _BRIEF_CHARS - 3] + "..."


def nesting_exceeds(value: Any, limit: int = MAX_NESTING) -> bool:
    """True if `value` holds lists or maps nested more than `limit` deep (iterative: no
    recursion, so the check itself cannot overflow the stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | tuple):
            children = item
        elif isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
