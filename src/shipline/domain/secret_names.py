"""What a secret's name may be. Stores hold names from configuration (`DEV-jwtSecret`) and from
people (`shipline secrets set NAME`); a name is a key, never a path or a shell word.
"""

from __future__ import annotations

import re

# Letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 127.
PORTABLE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,125}[A-Za-z0-9])?")
PORTABLE_RULE = "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
# Azure Key Vault's own rule: letters, digits and '-' only.
DASHED = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,125}[A-Za-z0-9])?")
DASHED_RULE = "letters, digits and '-', starting and ending with a letter or digit"


def name_problem(
    name: str, pattern: re.Pattern[str] = PORTABLE, rule: str = PORTABLE_RULE
) -> str | None:
    """Why `name` cannot name a secret under `pattern` (None: it can)."""
    if not name:
        return "a secret name cannot be empty"
    if len(name) > 127:
        return f"a secret name has at most 127 characters (this one has {len(name)})"
    if pattern.fullmatch(name) is None or ".." in name:
        return f"secret names use {rule}"
    return None
