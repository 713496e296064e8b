"""The role rules: who may view, deploy, approve and administer where, with token scopes."""

from __future__ import annotations

import pytest

from shipline.config.loader import load_config
from shipline.domain.access import Principal, allowed, scope_problem
from shipline.domain.models import Config
from tests.conftest import QUIKAPP, ROOT

SERVER_PROJECT = ROOT / "tests" / "e2e" / "projects" / "server" / "shipline.yaml"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(SERVER_PROJECT)


@pytest.mark.parametrize(
    ("person", "permission", "environment", "expected"),
    [
        ("ada", "admin", None, True),  # listed under admins
        ("ada", "deploy", "live", True),
        ("dev1", "deploy", "qa", True),  # a grant
        ("dev1", "deploy", "live", False),  # not granted there
        ("dev1", "view", "qa", True),  # deploying implies viewing
        ("dev1", "view", "live", False),
        ("dev1", "approve", "qa", False),
        ("quinn-2", "approve", "qa", False),  # not in qa-lead
        ("quinn", "approve", "qa", True),  # qa's approvals name qa-lead, which has quinn
        ("quinn", "approve", "live", False),  # live needs the cab
        ("casey", "approve", "live", True),
        ("vic", "view", "live", True),  # a viewer
        ("vic", "deploy", "dev", False),
        ("olly", "view", None, False),  # no role at all
        ("olly", "admin", None, False),
    ],
)
def test_person_permissions(
    config: Config, person: str, permission: str, environment: str | None, expected: bool
) -> None:
    who = Principal(person)
    assert allowed(config, who, permission, environment) is expected  # type: ignore[arg-type]


def test_an_admin_flag_from_the_user_store_allows_everything(config: Config) -> None:
    assert allowed(config, Principal("olly", admin=True), "deploy", "live")


def test_a_token_is_no_wider_than_its_scopes(config: Config) -> None:
    reader = Principal("ada", admin=True, scopes=frozenset({"view"}))
    assert allowed(config, reader, "view", "live")
    assert not allowed(config, reader, "deploy", "dev")
    approver = Principal("quinn", scopes=frozenset({"approve"}))
    assert allowed(config, approver, "approve", "qa")
    assert not allowed(config, approver, "view", "qa")  # scopes are exact
    assert not allowed(config, Principal("olly", scopes=frozenset({"admin"})), "view", "dev")


def test_without_grants_everyone_views_and_deploys_and_approver_groups_approve() -> None:
    quikapp = load_config(QUIKAPP)
    anyone = Principal("someone")
    assert allowed(quikapp, anyone, "deploy", "live")  # the approvals still guard it
    assert not allowed(quikapp, anyone, "approve", "live")
    assert not allowed(quikapp, anyone, "admin")
    cab = next(iter(quikapp.approver_groups["cab"].members))
    assert allowed(quikapp, Principal(cab), "approve", "live")


def test_scopes_are_checked() -> None:
    assert scope_problem([]) is not None
    assert (
        scope_problem(["view", "root"])
        == "unknown scope root (known: view, deploy, approve, admin)"
    )
    assert scope_problem(["view", "deploy"]) is None


def test_administering_an_environment_is_every_permission_there_and_nothing_more(
    config: Config,
) -> None:
    from shipline.domain.models import Access, AccessGrant

    grant = AccessGrant(members=["dana"], permissions=["admin"], environments=["dev"])
    scoped = config.model_copy(update={"access": Access(grants=[grant])})
    dana = Principal("dana")
    for permission in ("view", "deploy", "approve", "admin"):
        assert allowed(scoped, dana, permission, "dev")  # type: ignore[arg-type]
    assert not allowed(scoped, dana, "deploy", "live")
    assert not allowed(scoped, dana, "admin", "*")  # people and tokens need it everywhere
    assert allowed(config, Principal("ada"), "admin", "*")
