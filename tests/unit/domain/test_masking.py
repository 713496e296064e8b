"""The masker hides values and their encoded forms."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipline.domain.masking import MASK, Masker

SECRET = "p@ss w/rd+=?&"


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    ],
    ids=["plain", "url", "url-plus", "base64", "base64url-unpadded"],
)
def test_every_form_is_masked(form: str) -> None:
    masker = Masker([SECRET])
    assert masker.mask(f"before {form} after") == f"before {MASK} after"


def test_short_values_are_not_masked_and_empty_text_passes() -> None:
    masker = Masker(["ab"])
    assert not masker
    assert masker.mask("ab cd") == "ab cd"
    assert Masker([SECRET]).mask("") == ""


def test_longest_value_wins_and_lines_of_multiline_secrets() -> None:
    masker = Masker(["abcd", "abcdefgh", "-----BEGIN KEY-----\nline-two-of-key\n-----END KEY-----"])
    assert masker.mask("abcdefgh") == MASK
    assert masker.mask("log: line-two-of-key") == f"log: {MASK}"


def test_json_escaped_forms_are_masked() -> None:
    import json

    secret = 'quote"back\\slash-ünï'
    masker = Masker([secret])
    for ascii_only in (True, False):
        assert MASK in masker.mask(json.dumps({"v": secret}, ensure_ascii=ascii_only))


@given(st.text(min_size=1, max_size=40))
def test_url_encoding_is_the_one_urllib_writes(value: str) -> None:
    """The domain encodes as urllib does (the domain may not import urllib: I/O lives there)."""
    from shipline.domain.masking import _percent

    try:
        value.encode()
    except UnicodeEncodeError:
        return  # lone surrogates cannot be secrets
    assert _percent(value) == quote(value, safe="")
    assert _percent(value, plus=True) == quote_plus(value)
    assert _percent(value, "/") == quote(value)
