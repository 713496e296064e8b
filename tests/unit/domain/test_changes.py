"""Glob rules and the mapping from changed paths to services."""

from __future__ import annotations

import re

import pytest

from shipline.config.loader import load_config
from shipline.domain.changes import affected_services, glob_regex
from tests.conftest import QUIKAPP


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("services/api/**", "services/api/main.go", True),
        ("services/api/**", "services/api", True),
        ("services/api/**", "services/api2/main.go", False),
        ("services/*/Dockerfile", "services/x/Dockerfile", True),
        ("services/*/Dockerfile", "services/x/y/Dockerfile", False),
        ("**/*.proto", "a/b/c.proto", True),
        ("**/*.proto", "c.proto", True),
        ("shared/**/*.go", "shared/x.go", True),
        ("shared/**/*.go", "shared/a/b/x.go", True),
        ("shipline.yaml", "shipline.yaml", True),
        ("docs", "docs/readme.md", True),
        ("docs", "docsx/readme.md", False),
        ("src/?.py", "src/a.py", True),
        ("src/?.py", "src/ab.py", False),
    ],
)
def test_glob(pattern: str, path: str, matches: bool) -> None:
    assert bool(re.match(glob_regex(pattern) + r"\Z", path)) is matches


def test_quikapp_rules() -> None:
    config = load_config(QUIKAPP)
    result = affected_services(config, ["services/auth-service/src/Main.java"])
    assert list(result.services) == ["auth-service"]
    go = affected_services(config, ["docker/go/Dockerfile"])
    assert sorted(go.services) == sorted(s.name for s in config.services if s.stack == "go")
    proto = affected_services(config, ["shared/proto/chat.proto"])
    assert set(proto.services) == {
        s.name for s in config.services if "shared/proto/**" in s.shared_paths
    }
    everything = affected_services(config, ["README.md", "shipline.yaml"], ["shipline.yaml"])
    assert everything.build_all and len(everything.services) == 22
    assert affected_services(config, ["docs/guide.md"]).services == {}


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/main.go", "xmain.go", False),
        ("**/main.go", "a/main.go", True),
        ("**", "any/thing", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/xb", False),
    ],
)
def test_glob_edges(pattern: str, path: str, matches: bool) -> None:
    assert bool(re.match(glob_regex(pattern) + r"\Z", path)) is matches
