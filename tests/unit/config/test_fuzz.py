"""Random YAML text and random structures never make the loader raise anything but ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from shipline.cli.app import main
from shipline.config.loader import load_config
from shipline.errors import ConfigError
from tests.conftest import QUIKAPP

KEYS = [
    "project",
    "services",
    "stacks",
    "environments",
    "ladder",
    "name",
    "stack",
    "port",
    "healthPath",
    "tier",
    "target",
    "approvals",
    "groups",
    "mode",
    "checks",
    "businessHours",
    "windows",
    "timezone",
    "variableGroups",
    "variables",
    "secret",
    "include",
    "aliases",
    "strategy",
    "type",
    "steps",
    "secretStores",
    "members",
    "approverGroups",
    "minimum",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(KEYS),
    st.sampled_from(["go", "dev", "Mon-Fri 09:00-17:00"]),
)
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=5
        ),
    ),
    max_leaves=25,
)


def _write(path: Path, data: Any) -> None:
    yaml = YAML(typ="safe")
    with path.open("w") as handle:
        yaml.dump(data, handle)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=structures)
def test_random_structures_give_config_errors_only(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "shipline.yaml"
    _write(path, data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.lines()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab:- \n\t[]{}'\"#&*!|>%@`,?0123456789")), max_size=80
    )
)
def test_random_text_gives_config_errors_only(tmp_path: Path, text: str) -> None:
    path = tmp_path / "shipline.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.lines()


REFERENCE = QUIKAPP.parent


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    section=st.sampled_from(["services", "environments", "variableGroups", "stacks", "tiers"]),
    value=structures,
)
def test_mutated_reference_config_never_tracebacks(
    tmp_path: Path, section: str, value: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml = YAML(typ="safe")
    data = yaml.load(QUIKAPP.read_text())
    data.pop("include")
    for part in ("services.yaml", "environments.yaml", "variable-groups.yaml"):
        data.update(yaml.load((REFERENCE / part).read_text()))
    data[section] = value
    path = tmp_path / "shipline.yaml"
    _write(path, data)
    code = main(["--config", str(path), "validate"])
    captured = capsys.readouterr()
    assert code in (0, 2)
    assert "Traceback" not in captured.err
    if code == 2:
        assert captured.err.strip()
