"""Which API version to send: manifests are written for a current cluster (autoscaling/v2,
policy/v1); an older cluster that does not serve them gets the version it serves, found by
discovery and never assumed from a version number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shipline.errors import TargetError

# What to fall back to, in order, for a version a cluster may not serve yet. The kinds kept here
# have the same fields in both versions (HPA: metrics, behavior; PDB: minAvailable, selector).
FALLBACKS: Mapping[str, tuple[str, ...]] = {
    "autoscaling/v2": ("autoscaling/v2beta2",),
    "policy/v1": ("policy/v1beta1",),
}


def adapt(docs: Iterable[dict[str, Any]], served: set[str]) -> list[dict[str, Any]]:
    """`docs` with each apiVersion the cluster does not serve replaced by one it does.

    `served` holds "group/version" strings ("v1" for the core group) from discovery. A document
    whose version and fallbacks are all unserved is a TargetError naming it."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        version = str(doc.get("apiVersion", ""))
        if version in served:
            out.append(doc)
            continue
        chosen = next((v for v in FALLBACKS.get(version, ()) if v in served), None)
        if chosen is None:
            name = (doc.get("metadata") or {}).get("name", "?")
            raise TargetError(
                f"the cluster serves no version of {doc.get('kind')} {name} ({version})",
                hint="upgrade the cluster, or write the manifest for a version it serves",
            )
        out.append({**doc, "apiVersion": chosen})
    return out


def served_version(wanted: str, served: set[str]) -> str | None:
    """`wanted`, or the first fallback the cluster serves; None when it serves neither."""
    if wanted in served:
        return wanted
    return next((v for v in FALLBACKS.get(wanted, ()) if v in served), None)
