"""Layered resolution and $(name) expansion, table-driven."""

from __future__ import annotations

import pytest

from shipline.domain.variables import (
    Definition,
    Layer,
    VariableCycleError,
    expand,
    merge_layers,
)


def _layers(*specs: tuple[str, dict[str, str]]) -> list[Layer]:
    return [Layer(src, {k: Definition(value=v) for k, v in vs.items()}) for src, vs in specs]


def _values(*specs: tuple[str, dict[str, str]]) -> dict[str, str | None]:
    return {v.name: v.value for v in expand(merge_layers(_layers(*specs))).values()}


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([("g", {"a": "1"}), ("e", {"a": "2"})], {"a": "2"}),
        ([("g", {"a": "1"}), ("e", {"A": "2"})], {"A": "2"}),  # case-insensitive, last spelling
        ([("g", {"a": "x"}), ("e", {"b": "$(a)-y"})], {"a": "x", "b": "x-y"}),
        ([("g", {"b": "$(A)"}), ("e", {"a": "v"})], {"b": "v", "a": "v"}),
        ([("g", {"b": "$(nope)"})], {"b": "$(nope)"}),  # unknown stays as written
        ([("g", {"a": "$(b)$(b)", "b": "$(c)", "c": "z"})], {"a": "zz", "b": "z", "c": "z"}),
        ([("g", {"a": "$(b"})], {"a": "$(b"}),  # not a reference
        ([("g", {"env": "qa", "p": "$(env)"}), ("s", {"env": "dev"})], {"env": "dev", "p": "dev"}),
    ],
    ids=[
        "later-wins",
        "case-insensitive",
        "expands",
        "expands-later-layer",
        "unknown-kept",
        "chain",
        "unclosed",
        "override-then-expand",
    ],
)
def test_resolution(layers: list[tuple[str, dict[str, str]]], expected: dict[str, str]) -> None:
    assert _values(*layers) == expected


def test_source_and_overrides_are_recorded() -> None:
    merged = merge_layers(_layers(("global", {"x": "1"}), ("env", {"x": "2"}), ("svc", {"X": "3"})))
    assert merged["x"].source == "svc"
    assert merged["x"].overridden == ("global", "env")


@pytest.mark.parametrize(
    "values",
    [{"a": "$(a)"}, {"a": "$(b)", "b": "$(a)"}, {"a": "x$(b)", "b": "$(c)", "c": "$(A)"}],
    ids=["self", "pair", "three"],
)
def test_cycles_are_reported_not_looped(values: dict[str, str]) -> None:
    with pytest.raises(VariableCycleError) as info:
        expand(merge_layers(_layers(("g", values))))
    assert "cycle" in str(info.value)
    assert info.value.cycle[0].casefold() == info.value.cycle[-1].casefold()


def test_value_taking_in_a_secret_becomes_secret() -> None:
    layer = Layer(
        "g", {"pw": Definition(value="s3cr3t!", secret=True), "dsn": Definition(value="u:$(pw)@h")}
    )
    out = expand(merge_layers([layer]))
    assert out["dsn"].value == "u:s3cr3t!@h"
    assert out["dsn"].secret
