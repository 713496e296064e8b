"""The local daemon's wire: the domain's dataclasses cross it and come back as themselves, and a
field the other side's (older) shipline does not send takes its default."""

from __future__ import annotations

import json

from shipline.domain.deploy import DeploySpec, Revision
from shipline.targets.local.wire import decode, encode


def test_dataclasses_come_back_as_themselves() -> None:
    spec = DeploySpec("qa", "api", "1.0.0", replicas=2, secret_names=frozenset({"B", "A"}))
    revision = Revision(3, "1.0.0", 2, "2026-11-28T20:00:00+00:00", "deploy", ("A",),
                        change="run-4/deploy/api")  # fmt: skip
    sent = json.loads(json.dumps(encode({"spec": spec, "history": [revision]})))
    assert decode(sent) == {"spec": spec, "history": [revision]}


def test_a_field_the_other_side_does_not_send_takes_its_default() -> None:
    """A daemon started by an older shipline outlives the upgrade: its revisions carry no
    change key."""
    sent = json.loads(json.dumps(encode(Revision(1, "1.0.0", 1, "", "deploy", change="k"))))
    del sent["change"]
    assert decode(sent) == Revision(1, "1.0.0", 1, "", "deploy")
