"""shipline's error types: one root, two families.

    ShiplineError
    ├── UserError                  bad input; the CLI prints it in one line and exits 2
    │   ├── ConfigError            a problem in shipline.yaml; carries file, line, column and a hint
    │   │   └── ConfigErrors       every ConfigError found, reported together
    │   ├── NotFoundError          a named thing (environment, service, secret, run) does not exist
    │   ├── AlreadyRunning         another live process holds this worker id or state folder
    │   ├── PermissionDenied       a rule refuses this actor or pipeline (variable group, approval)
    │   ├── NotAuthenticated       no verified identity (server: no session, a bad token)
    │   ├── TooManyAttempts        sign-ins for one name came too fast
    │   └── VoteNotCounted         a vote that would change nothing; said so, not recorded
    ├── RuleError                  a rule said no (non-technical: the run *failed*)
    │   ├── ApprovalRequired       the stage waits for people
    │   └── CheckFailed            an automatic check said no
    │       ├── SecretMissing      a secret an environment needs is missing or empty
    │       ├── StalePlan          a saved infrastructure plan no longer matches what it changes
    │       └── StateLocked        infrastructure state is locked by another operation
    └── TechnicalError             something broke (technical: the run *errored*)
        ├── StoreError             the state store or a secret store failed
        ├── TargetError            a deploy target failed
        └── NotifyError            a notification could not be delivered

Errors never carry secret values: they name variables, groups and stores instead.
"""

from __future__ import annotations


class ShiplineError(Exception):
    """Root of every error shipline raises on purpose."""

    exit_code = 1
    terminal = False  # True: retrying cannot help

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The error as the lines a user reads."""
        out = [self.message]
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return out


class UserError(ShiplineError):
    """Bad input: a malformed command, an unknown name, a broken configuration."""

    exit_code = 2
    terminal = True


class NotFoundError(UserError):
    """A named thing does not exist."""


class PermissionDenied(UserError):
    """A rule refuses this actor or this pipeline."""


class NotAuthenticated(UserError):
    """No verified identity: no session, or a token that is unknown, expired or revoked."""


class TooManyAttempts(UserError):
    """Sign-in attempts for one name came too fast; wait and try again."""


class VoteNotCounted(UserError):
    """A vote that changes nothing (the same person again, a group already satisfied, out of
    turn); it is audited as such and not recorded as a vote."""


class AlreadyRunning(UserError):
    """Another live process holds what this one needs (a worker id, a state folder's services)."""


class Location:
    """A place in a configuration file; line and column count from 1. Immutable, compared by
    value. (A plain class, not a dataclass: every command loads this module, the quick path
    included, and `dataclasses` costs more to import than the rest of it.)"""

    __slots__ = ("column", "file", "line")
    file: str
    line: int
    column: int

    def __init__(self, file: str, line: int, column: int) -> None:
        for name, value in (("file", file), ("line", line), ("column", column)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Location is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Location):
            return NotImplemented
        return (self.file, self.line, self.column) == (other.file, other.line, other.column)

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.column))

    def __reduce__(self) -> tuple[type[Location], tuple[str, int, int]]:
        return Location, (self.file, self.line, self.column)

    def __repr__(self) -> str:
        return f"Location(file={self.file!r}, line={self.line!r}, column={self.column!r})"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ConfigError(UserError):
    """A problem in the configuration, located at file:line:column."""

    def __init__(self, message: str, *, location: Location | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.location = location

    def lines(self) -> list[str]:
        where = f"{self.location}: " if self.location else ""
        out = [f"{where}{self.message}"]
        if self.hint:
            out.append(f"    hint: {self.hint}")
        return out


class ConfigErrors(ConfigError):
    """Every problem found in one configuration, in file order."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = sorted(errors, key=_error_order)
        count = len(self.errors)
        super().__init__(f"{count} configuration error{'s' if count != 1 else ''}")

    def lines(self) -> list[str]:
        out: list[str] = []
        for error in self.errors:
            out.extend(error.lines())
        return out


def _error_order(error: ConfigError) -> tuple[str, int, int, str]:
    loc = error.location
    if loc is None:
        return ("", 0, 0, error.message)
    return (loc.file, loc.line, loc.column, error.message)


class RuleError(ShiplineError):
    """A rule said no: the run fails (not errors)."""

    terminal = True


class ApprovalRequired(RuleError):
    """The stage waits for an approval."""


class CheckFailed(RuleError):
    """An automatic check said no."""


class SecretMissing(CheckFailed):
    """Secrets an environment needs are missing or empty; names them, never values."""


class StalePlan(CheckFailed):
    """A saved infrastructure plan cannot be applied: the state or the configuration moved."""


class StateLocked(CheckFailed):
    """Infrastructure state is locked by another operation (or one that died holding it)."""

    def __init__(self, message: str, *, lock_id: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.lock_id = lock_id


class Withdrawn(ShiplineError):
    """Not done, and nothing was changed: it was to follow another change that did not succeed
    (a rollout queued behind the one before it, `OrderedApply`). Neither a rule's "no" nor
    something broken: the step that asked for it counts as skipped."""

    terminal = True


class TechnicalError(ShiplineError):
    """Something broke: the run errors. May be retried unless terminal."""


class StoreError(TechnicalError):
    """The state store or a secret store failed."""


class TargetError(TechnicalError):
    """A deploy target failed."""


class NotifyError(TechnicalError):
    """A notification could not be delivered (never fails a run)."""


__all__ = [
    "AlreadyRunning",
    "ApprovalRequired",
    "CheckFailed",
    "ConfigError",
    "ConfigErrors",
    "Location",
    "NotFoundError",
    "NotifyError",
    "PermissionDenied",
    "RuleError",
    "SecretMissing",
    "ShiplineError",
    "StalePlan",
    "StateLocked",
    "StoreError",
    "TargetError",
    "TechnicalError",
    "UserError",
    "VoteNotCounted",
    "Withdrawn",
]
