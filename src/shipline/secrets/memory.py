"""An in-memory SecretStore: the fake that unit tests use."""

from __future__ import annotations

from shipline.domain.secret_names import name_problem


class MemorySecretStore:
    """Secrets in a dict; nothing is written anywhere."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def get(self, name: str) -> str | None:
        """The value stored under `name`, or None."""
        return self._values.get(name)

    def set(self, name: str, value: str) -> None:
        """Store `value` under `name`."""
        self._values[name] = value

    def delete(self, name: str) -> bool:
        """Remove `name`; False when it was not there."""
        return self._values.pop(name, None) is not None

    def names(self) -> list[str]:
        """The stored names, sorted."""
        return sorted(self._values)

    def name_problem(self, name: str) -> str | None:
        """Why `name` cannot be a secret's name here (None: it can)."""
        return name_problem(name)
