"""Metric sources for canary analysis: the gateway's own counters, or Prometheus over HTTP.

Both give a `Sample` per version for the last interval. The Prometheus source reads what a
Prometheus server scraped from the gateways' `/_shipline/metrics` (PromQL `increase` over the
interval; p95 from the latency histogram).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from shipline.domain.canary import Sample
from shipline.errors import TechnicalError


class GatewayMetrics:
    """Reads (and resets) a gateway's per-version counters: one interval at a time."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway
        self._last: dict[str, dict[str, Any]] = {}

    def collect(self) -> None:
        """End the interval: take the counters and start new ones."""
        self._last = self._gateway.counters(reset=True)

    def sample(self, version: str, seconds: float) -> Sample:
        """The collected interval's sample of `version`."""
        data = self._last.get(version) or {"requests": 0, "responses": {}, "latenciesMs": []}
        return Sample(
            int(data["requests"]), int(data["responses"].get("5xx", 0)), tuple(data["latenciesMs"])
        )


class PrometheusMetrics:
    """PromQL over Prometheus's HTTP API for one gateway's series (selected by its labels)."""

    def __init__(
        self,
        url: str,
        labels: dict[str, str],
        *,
        series: str = "shipline_gateway",
        timeout: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.series = series
        self.selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        self.timeout = timeout

    def _query(self, promql: str) -> float | None:
        query = urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v1/query?{query}", timeout=self.timeout
            ) as response:
                data = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TechnicalError(
                f"Prometheus at {self.url} did not answer: {type(exc).__name__}"
            ) from exc
        result = data.get("data", {}).get("result", [])
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value  # NaN: no data

    def collect(self) -> None:
        """Nothing to do: Prometheus keeps the history."""

    def sample(self, version: str, seconds: float) -> Sample:
        """Requests, 5xx and p95 of `version` over the last `seconds`."""
        window = f"{max(int(seconds), 1)}s"
        sel = f'{self.selector},version="{version}"' if self.selector else f'version="{version}"'
        requests = (
            self._query(f"sum(increase({self.series}_responses_total{{{sel}}}[{window}]))") or 0.0
        )
        errors = (
            self._query(
                f'sum(increase({self.series}_responses_total{{{sel},class="5xx"}}[{window}]))'
            )
            or 0.0
        )
        buckets = f"increase({self.series}_request_duration_seconds_bucket{{{sel}}}[{window}])"
        p95 = self._query(f"histogram_quantile(0.95, sum by (le) ({buckets}))")
        return Sample(
            round(requests), round(errors), (), p95_ms=None if p95 is None else p95 * 1000
        )
