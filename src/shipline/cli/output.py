"""Everything the CLI prints goes through here: masked, as a Rich table or as JSON."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from shipline.domain.masking import Masker

TYPE_CHECKING = False  # typing is not imported at run time (the quick path loads this)
if TYPE_CHECKING:
    from typing import IO, Any, TextIO


class MaskingStream(io.TextIOBase):
    """A text stream that masks secret values in everything written through it."""

    def __init__(self, inner: TextIO, masker: Masker) -> None:
        self._inner = inner
        self._masker = masker
        self.enabled = True

    def write(self, text: str) -> int:
        self._inner.write(self._masker.mask(text) if self.enabled else text)
        return len(text)

    def writelines(self, lines: Sequence[str]) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Output:
    """The CLI's printer: human tables or JSON, always through the masker."""

    def __init__(
        self, masker: Masker, stdout: IO[str] | None = None, stderr: IO[str] | None = None
    ):
        self.masker = masker
        self.stdout = MaskingStream(stdout or sys.stdout, masker)  # type: ignore[arg-type]
        self.stderr = MaskingStream(stderr or sys.stderr, masker)  # type: ignore[arg-type]
        self._console: Any = None
        self.no_color = bool(os.environ.get("NO_COLOR"))  # https://no-color.org

    @property
    def console(self) -> Any:
        """A Rich console on the masked stdout (Rich is imported on first use)."""
        if self._console is None:
            from typing import cast

            from rich.console import Console

            width = None if self.stdout.isatty() else 200
            self._console = Console(
                file=cast("IO[str]", self.stdout), highlight=False, width=width,
                no_color=self.no_color,
            )  # fmt: skip
        return self._console

    def json(self, data: Any) -> None:
        """Print `data` as indented JSON."""
        self.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")

    def line(self, text: str = "") -> None:
        """Print one plain line."""
        self.stdout.write(text + "\n")

    def error(self, text: str) -> None:
        """Print one line on stderr."""
        self.stderr.write(text + "\n")

    def table(
        self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Print a table; cells are shown as text."""
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:  # cells are text: "[name]" in them is not markup
            table.add_row(*("" if cell is None else escape(str(cell)) for cell in row))
        self.console.print(table)

    @contextmanager
    def unmasked(self) -> Iterator[None]:
        """Print without masking (for an audited --reveal only)."""
        self.stdout.enabled = False
        try:
            yield
        finally:
            self.stdout.enabled = True
