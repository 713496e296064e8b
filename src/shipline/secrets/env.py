"""A read-only secret store over environment variables (CI systems inject secrets this way).

Name `DEV-JWT-SECRET` with prefix `SHIPLINE_SECRET_` reads `SHIPLINE_SECRET_DEV_JWT_SECRET`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shipline.domain.secret_names import name_problem
from shipline.errors import UserError

DEFAULT_PREFIX = "SHIPLINE_SECRET_"


def env_name(prefix: str, name: str) -> str:
    """The environment variable that holds secret `name`."""
    return prefix + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


class EnvSecretStore:
    """Secrets read from a snapshot of the environment taken when the store is built."""

    def __init__(self, environ: Mapping[str, str], prefix: str = DEFAULT_PREFIX, name: str = "env"):
        self._environ = dict(environ)
        self.prefix = prefix
        self.name = name

    @classmethod
    def build(cls, name: str, settings: Mapping[str, Any], context: Any) -> EnvSecretStore:
        """A store reading variables that start with settings['prefix']."""
        return cls(context.environ, str(settings.get("prefix", DEFAULT_PREFIX)), name)

    def get(self, name: str) -> str | None:
        """The value of the variable for `name`, or None."""
        return self._environ.get(env_name(self.prefix, name))

    def set(self, name: str, value: str) -> None:
        """Refused: the environment is set by whoever starts shipline."""
        raise UserError(
            f"secret store '{self.name}' is read-only",
            hint=f"export {env_name(self.prefix, name)} before running shipline",
        )

    def delete(self, name: str) -> bool:
        """Refused, as `set`."""
        raise UserError(
            f"secret store '{self.name}' is read-only",
            hint=f"unset {env_name(self.prefix, name)} instead",
        )

    def names(self) -> list[str]:
        """Names derived from the variables with the prefix (dashes shown as '_')."""
        return sorted(k[len(self.prefix) :] for k in self._environ if k.startswith(self.prefix))

    def name_problem(self, name: str) -> str | None:
        """Why `name` cannot be a secret's name here (None: it can)."""
        return name_problem(name)
