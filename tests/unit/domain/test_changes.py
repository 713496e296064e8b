"""Glob rules and the mapping from changed paths to services."""

from __future__ import annotations

import pytest

from shipline.config.loader import load_config
from shipline.domain.changes import affected_services, path_spec
from tests.conftest import QUIKAPP


@pytest.mark.parametrize(
    ("patterns", "path", "matches"),
    [
        (["services/api/**"], "services/api/main.go", True),
        (["services/api/**"], "services/api2/main.go", False),
        (["services/*/Dockerfile"], "services/x/Dockerfile", True),
        (["services/*/Dockerfile"], "services/x/y/Dockerfile", False),
        (["**/*.proto"], "a/b/c.proto", True),
        (["**/*.proto"], "c.proto", True),
        (["shared/**/*.go"], "shared/x.go", True),
        (["shared/**/*.go"], "shared/a/b/x.go", True),
        (["shipline.yaml"], "shipline.yaml", True),
        (["/shipline.yaml"], "examples/shipline.yaml", False),
        (["docs"], "docs/readme.md", True),
        (["docs"], "docsx/readme.md", False),
        (["docs/"], "a/docs/readme.md", True),  # no slash but a trailing one: any depth
        (["src/?.py"], "src/a.py", True),
        (["src/?.py"], "src/ab.py", False),
        (["svc/[ab]/**"], "svc/a/x.go", True),  # a character class, not the literal "[ab]"
        (["svc/[ab]/**"], "svc/c/x.go", False),
        (["./src/x/**"], "src/x/main.go", True),  # "./" is the repository root
        (["src/x/**", "!src/x/docs/**"], "src/x/docs/a.md", False),  # excluded
        (["src/x/**", "!src/x/docs/**"], "src/x/main.go", True),
        (["src/x/**", "!src/x/docs/**", "src/x/docs/api.md"], "src/x/docs/api.md", True),
    ],
)
def test_patterns_are_gitignore_style(patterns: list[str], path: str, matches: bool) -> None:
    config = load_config(QUIKAPP)
    service = config.services[0].model_copy(update={"paths": patterns, "shared_paths": []})
    others = [s.model_copy(update={"paths": [], "shared_paths": []}) for s in config.services[1:]]
    stacks = {k: v.model_copy(update={"paths": []}) for k, v in config.stacks.items()}
    alone = config.model_copy(update={"services": [service, *others], "stacks": stacks})
    found = affected_services(alone, [path]).services
    assert (service.name in found) is matches
    assert path_spec(patterns).match_file(path) is matches


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
    assert path_spec([pattern]).match_file(path) is matches
