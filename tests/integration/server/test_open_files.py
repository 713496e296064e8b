"""A server that queues runs keeps what it opens to one state store: each deploy, action and
promotion it queues goes through the server's own runs, not a store of its own opened (and left
open) per request; a long-running server would otherwise run out of files or connections."""

from __future__ import annotations

import os

from tests.integration.server.conftest import Site


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _queue_some(site: Site, count: int) -> None:
    for n in range(count):
        for path, body in (
            ("/api/v1/runs", {"environment": "dev", "services": "api", "tag": f"1.0.{n}"}),
            ("/api/v1/runs", {"environment": "dev", "services": "api", "pipeline": "restart"}),
            ("/api/v1/promotions", {"source": "dev", "targets": "qa", "tag": "9.9.9"}),
        ):
            answer = site.client.post(path, headers=site.auth("ada"), json=body)
            # the promotion is refused (nothing succeeded in dev): it opened what it checks with
            assert answer.status_code in (202, 400), answer.text


def test_queuing_runs_leaves_no_store_open(site: Site) -> None:
    _queue_some(site, 3)  # the server's pool opens what it keeps
    before = _open_files()
    _queue_some(site, 15)
    assert _open_files() - before <= 2, "every request left a state store open"
