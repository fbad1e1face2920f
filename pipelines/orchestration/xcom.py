"""Typed stage results to and from XCom: JSON at the task boundary, dataclasses inside.

The library passes frozen dataclasses between stages; XCom stores JSON. pydantic's
TypeAdapter converts both ways (dates as ISO strings, nested dataclasses, optionals), so
no task body hand-writes a dict and a malformed value fails loudly when it is read back.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from pydantic import TypeAdapter

T = TypeVar("T")

TALLY_KEY = "plan_tally"
"""The XCom key under which a stage's planning task leaves the tally of the days it did not
map a task to (`pipelines/chunking.py`); chunk tasks keep theirs in their return value."""


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def dump(value: Any) -> Any:
    """A stage result as JSON-able data for XCom."""
    return _adapter(type(value)).dump_python(value, mode="json")


def load(kind: type[T], data: Any) -> T:
    """A stage result back from its XCom data."""
    return _adapter(kind).validate_python(data)
