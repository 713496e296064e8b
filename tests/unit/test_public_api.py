"""The public API: __all__ is sorted and complete, and every name resolves."""

from __future__ import annotations

import shipline


def test_all_is_sorted_and_resolves() -> None:
    assert shipline.__all__ == sorted(shipline.__all__)
    for name in shipline.__all__:
        assert getattr(shipline, name) is not None


def test_unknown_attribute_raises() -> None:
    try:
        _ = shipline.nothing_here  # type: ignore[attr-defined]
    except AttributeError:
        return
    raise AssertionError("expected AttributeError")
