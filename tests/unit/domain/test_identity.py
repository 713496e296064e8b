"""People's names: one canonical form per person, confusable and invisible characters refused."""

from __future__ import annotations

import re

import pytest

from shipline.domain.identity import IdentityError, canonical_identity


@pytest.mark.parametrize(
    "raw",
    [" quinn", "QUINN", "quinn ", "\uff51uinn", "Quinn"],
    ids=["leading-space", "upper-case", "trailing-space", "fullwidth-q", "title-case"],
)
def test_spellings_of_one_person_are_one_name(raw: str) -> None:
    assert canonical_identity(raw) == "quinn"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("qu\u0456nn", "mix scripts"),  # Cyrillic i among Latin letters
        ("qu\u200binn", "U+200B"),  # zero-width space
        ("quinn\x07", "U+0007"),
        ("qu inn", "U+0020"),
        ("quinn\u202e", "U+202E"),  # right-to-left override
        ("$(id)", "U+0024"),
        ("q" * 200, "at most"),
    ],
    ids=["empty", "blank", "cyrillic-i", "zero-width", "control", "inner-space", "bidi",
         "shell", "too-long"],
)  # fmt: skip
def test_names_that_could_pass_for_someone_else_are_refused(raw: str, problem: str) -> None:
    with pytest.raises(IdentityError, match=re.escape(problem)):
        canonical_identity(raw)


def test_other_scripts_alone_are_names() -> None:
    assert canonical_identity("Йосип") == "йосип"
    assert canonical_identity("José.Álvarez") == "josé.álvarez"
