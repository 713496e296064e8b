"""What a deploy asks and what would change: pure comparisons, never a secret value shown."""

from __future__ import annotations

import pytest

from shipline.domain.deploy import DeploySpec, plan_change

BASE = DeploySpec("qa", "api", "1.0.0", env={"A": "1", "TOKEN": "s3cr3t-1"},
                  secret_names=frozenset({"TOKEN"}))  # fmt: skip


@pytest.mark.parametrize(
    ("current", "desired", "create", "changed", "values"),
    [
        (None, BASE, True, {"version", "replicas", "healthPath", "variables", "command"}, ()),
        (BASE, BASE, False, set(), ()),
        (BASE, DeploySpec("qa", "api", "1.1.0", env=BASE.env, secret_names=BASE.secret_names),
         False, {"version"}, ()),
        (BASE, DeploySpec("qa", "api", "1.0.0", env={"A": "1", "TOKEN": "s3cr3t-2"},
                          secret_names=BASE.secret_names), False, set(), ("TOKEN",)),
        (BASE, DeploySpec("qa", "api", "1.0.0", env={"A": "1"}), False, {"variables"}, ()),
    ],
    ids=["first", "in-sync", "new-version", "secret-rotated", "variable-removed"],
)  # fmt: skip
def test_plan_change(
    current: DeploySpec | None, desired: DeploySpec, create: bool, changed: set[str],
    values: tuple[str, ...],
) -> None:  # fmt: skip
    plan = plan_change(current, desired)
    assert (plan.create, set(plan.changes), plan.variables_changed) == (create, changed, values)
    assert plan.in_sync == (not create and not changed and not values)
    assert "s3cr3t" not in repr(plan.as_dict())


def test_a_spec_never_shows_its_values() -> None:
    assert "s3cr3t" not in repr(BASE) and "s3cr3t" not in str(BASE)
    stored = BASE.stored()
    assert "s3cr3t" not in repr(stored) and stored["secretNames"] == ["TOKEN"]
    restored = DeploySpec.from_stored(stored, {})
    assert restored.missing_secrets() == ["TOKEN"]
    assert DeploySpec.from_stored(stored, {"TOKEN": "v"}).missing_secrets() == []


def test_a_plan_shows_variable_values_but_never_a_secret_one() -> None:
    after = DeploySpec("qa", "api", "1.0.0", env={"A": "2", "TOKEN": "s3cr3t-2", "B": "new"},
                       secret_names=frozenset({"TOKEN"}))  # fmt: skip
    shown = plan_change(BASE, after).as_dict()["variables"]
    assert shown == [
        {"name": "A", "from": "1", "to": "2"},
        {"name": "B", "from": None, "to": "new"},
        {"name": "TOKEN", "from": "***", "to": "***"},
    ]
    assert "s3cr3t" not in str(plan_change(None, after).as_dict())
