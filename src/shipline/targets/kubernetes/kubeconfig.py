"""Which kubeconfig, context and cluster a `kubernetes` target reaches, checked from its settings
alone: the target's `create` builds nothing on a kubeconfig that fails this, and a submission
checks it first (`check`), so that a run that could only fail at its deploy step is refused
before it starts. Light on purpose: it reads the file, and asks no cluster."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from shipline.domain.ports import TargetContext
from shipline.errors import TargetError


def kubeconfig_path(settings: Mapping[str, str | None]) -> str:
    """The kubeconfig file the target reads: its `kubeconfig:` setting, else KUBECONFIG."""
    path = settings.get("kubeconfig") or os.environ.get("KUBECONFIG")
    if not path:
        raise TargetError(
            "the kubernetes target needs a kubeconfig",
            hint="set 'kubeconfig:' on the target, or KUBECONFIG",
        )
    return path


def check(context: TargetContext) -> None:
    """Refuse settings no target could be built from: no kubeconfig, one that cannot be read,
    no such context, or a context that points at another cluster than the target's
    `cluster:` (another environment's, production's)."""
    settings = context.settings
    path = kubeconfig_path(settings)
    try:
        with open(path, encoding="utf-8") as file:
            document: Any = YAML(typ="safe", pure=True).load(file)
    except (OSError, YAMLError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
        raise TargetError(
            f"kubeconfig {path}: {problem}",
            hint="check the target's 'kubeconfig' (or KUBECONFIG)",
        ) from None
    document = document if isinstance(document, dict) else {}
    contexts = {
        str(entry.get("name")): entry.get("context") or {}
        for entry in document.get("contexts") or []
        if isinstance(entry, dict)
    }
    name = settings.get("context") or document.get("current-context")
    if not name or name not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        raise TargetError(
            f"kubeconfig {path}: no context {name!r}"
            if name
            else f"kubeconfig {path}: no"
            " context chosen (no 'context:' on the target, no current-context)",
            hint=f"set the target's 'context:' to one of its contexts ({known})",
        )
    wanted, found = settings.get("cluster"), contexts[name].get("cluster")
    if wanted and found != wanted:
        raise TargetError(
            f"kubeconfig {path}: context '{name}' points at cluster '{found}', "
            f"not at '{wanted}' (the target's cluster)",
            hint="set the target's 'context:' to a context of that cluster (`kubectl config "
            "get-contexts`), or correct its 'cluster:'",
        )
