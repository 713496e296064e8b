"""People's names as approvals compare them: one canonical form per person.

`' Quinn'`, `QUINN` and `quinn` are one person; a name mixing scripts (a Cyrillic i among
Latin letters), or holding control, format or space characters inside, is refused rather than
shown as someone it is not.
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 128
_PUNCTUATION = set("._-@+'")


class IdentityError(ValueError):
    """A name that cannot identify a person."""


def _script(char: str) -> str | None:
    """The script of a letter (LATIN, CYRILLIC, GREEK, ...), None for anything else."""
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def canonical_identity(raw: str) -> str:
    """The canonical form of a person's name: trimmed, NFKC-normalised, case-folded.

    Raises IdentityError (saying why) for an empty name, one with characters other than letters,
    digits and `._-@+'`, or letters from more than one script."""
    name = unicodedata.normalize("NFKC", raw).strip().casefold()
    name = unicodedata.normalize("NFKC", name)  # case folding can leave unnormalised text
    if not name:
        raise IdentityError("a user name cannot be empty")
    if len(name) > MAX_LENGTH:
        raise IdentityError(f"a user name has at most {MAX_LENGTH} characters")
    for char in name:
        if not (char.isalnum() or char in _PUNCTUATION):
            shown = f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}"
            raise IdentityError(f"a user name cannot contain {shown}")
    scripts = {s for s in map(_script, name) if s}
    if len(scripts) > 1:
        raise IdentityError(
            f"a user name cannot mix scripts ({', '.join(sorted(scripts)).lower()}):"
            " some letters only look alike"
        )
    return name
