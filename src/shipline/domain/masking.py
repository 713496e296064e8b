"""The one masker every output path uses: secret values never reach a reader.

Each value is replaced together with its base64 (standard and URL-safe, padded or not),
URL-encoded and JSON-escaped forms. Values shorter than MIN_LENGTH are not masked: masking
"1" or "on" would mangle every line while protecting nothing.
"""

from __future__ import annotations

import base64
import json
import re
import string

MASK = "***"
MIN_LENGTH = 4
_UNRESERVED = frozenset((string.ascii_letters + string.digits + "_.-~").encode())


def _percent(value: str, safe: str = "", *, plus: bool = False) -> str:
    """URL-encoding as `urllib.parse.quote` (and `quote_plus` with `plus`) writes it."""
    keep = _UNRESERVED | frozenset(safe.encode())
    out = []
    for byte in value.encode():
        if byte in keep:
            out.append(chr(byte))
        elif plus and byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _forms(value: str) -> set[str]:
    raw = value.encode()
    forms = {value, _percent(value), _percent(value, plus=True), _percent(value, "/")}
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms.update({text, text.rstrip("=")})
    return {form for form in forms if len(form) >= MIN_LENGTH}


class Masker:
    """Replaces registered secret values (and their encodings) in text with ***."""

    def __init__(self, values: list[str] | None = None) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for value in values or []:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Register a secret value; its multi-line parts are registered too."""
        if not value or len(value) < MIN_LENGTH:
            return
        new = _forms(value)
        for line in value.splitlines():
            if len(line.strip()) >= MIN_LENGTH:
                new |= _forms(line.strip())
        if not new <= self._forms:
            self._forms |= new
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def mask(self, text: str) -> str:
        """Text with every registered form replaced."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return bool(self._forms)
