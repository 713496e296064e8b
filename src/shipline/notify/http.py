"""A small JSON POST over the standard library; failures become NotifyError."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping

from shipline.errors import NotifyError


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float = 5.0) -> int:
    """POST `body`; return the status, raise NotifyError unless it is 2xx."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "shipline")
    for key, value in headers.items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"endpoint answered {exc.code}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifyError(f"endpoint unreachable ({type(reason).__name__})") from exc
    return status
