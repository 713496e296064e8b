"""The embedded default secret store: one file encrypted at rest with Fernet (AES + HMAC).

The key comes from SHIPLINE_SECRET_KEY, or from `secret.key` beside the store, created with
mode 0600 on first use. Writes are atomic; the store file is 0600 too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from shipline.domain.secret_names import name_problem
from shipline.errors import StoreError
from shipline.process import exclusive

KEY_ENV = "SHIPLINE_SECRET_KEY"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_create_key(key_file: Path, environ: Mapping[str, str]) -> bytes:
    """The Fernet key: from the environment, else the key file (created 0600 when absent)."""
    if environ.get(KEY_ENV):
        return environ[KEY_ENV].encode()
    with exclusive(key_file.with_name(key_file.name + ".lock")):  # two first uses make one key
        if key_file.exists():
            return key_file.read_bytes().strip()
        key = Fernet.generate_key()
        _write_private(key_file, key + b"\n")
        return key


class FileSecretStore:
    """Secrets in one encrypted file."""

    def __init__(self, path: Path, key: bytes, *, name: str = "file") -> None:
        self.path = path
        self.name = name
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise StoreError(
                f"secret store '{name}': the key is not a valid Fernet key",
                hint=f"unset {KEY_ENV} or give it a key made by Fernet.generate_key()",
            ) from exc

    @classmethod
    def build(cls, name: str, settings: Mapping[str, Any], context: Any) -> FileSecretStore:
        """A store at settings['path'] (default `.shipline/secrets.enc`)."""
        state_dir: Path = context.state_dir
        path = Path(settings.get("path") or state_dir / "secrets.enc")
        key = load_or_create_key(state_dir / "secret.key", context.environ)
        return cls(path, key, name=name)

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            plain = self._fernet.decrypt(self.path.read_bytes())
        except InvalidToken as exc:
            raise StoreError(
                f"secret store '{self.name}': cannot decrypt {self.path}",
                hint=f"the key differs from the one it was written with (check {KEY_ENV})",
            ) from exc
        except OSError as exc:
            raise StoreError(f"secret store '{self.name}': cannot read {self.path}") from exc
        data: dict[str, str] = json.loads(plain)
        return data

    def _write(self, values: dict[str, str]) -> None:
        token = self._fernet.encrypt(json.dumps(values, sort_keys=True).encode())
        try:
            _write_private(self.path, token)
        except OSError as exc:
            raise StoreError(f"secret store '{self.name}': cannot write {self.path}") from exc

    def get(self, name: str) -> str | None:
        """The value stored under `name`, or None."""
        return self._read().get(name)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Read-modify-write in turn with every other process writing this store."""
        return exclusive(self.path.with_name(self.path.name + ".lock"))

    def set(self, name: str, value: str) -> None:
        """Store `value` under `name`."""
        with self._locked():
            values = self._read()
            values[name] = value
            self._write(values)

    def delete(self, name: str) -> bool:
        """Remove `name`; False when it was not there."""
        with self._locked():
            values = self._read()
            if name not in values:
                return False
            del values[name]
            self._write(values)
            return True

    def names(self) -> list[str]:
        """The stored names, sorted."""
        return sorted(self._read())

    def name_problem(self, name: str) -> str | None:
        """Why `name` cannot be a secret's name here (None: it can)."""
        return name_problem(name)
