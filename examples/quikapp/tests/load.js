// QuikApp load gate (k6): every deployed service under a little load; p50/p90/p95/p99 recorded, the
// thresholds come from the configuration (-e P95_MS=..., -e MAX_FAILED=...).
import http from "k6/http";
import { check } from "k6";

const addresses = JSON.parse(__ENV.SHIPLINE_ADDRESSES);
const artifacts = __ENV.SHIPLINE_ARTIFACTS;

export const options = {
  vus: 2,
  iterations: Number(__ENV.ITERATIONS || 100),
  summaryTrendStats: ["p(50)", "p(90)", "p(95)", "p(99)"],
  thresholds: {
    http_req_duration: [`p(95)<${__ENV.P95_MS || 250}`],
    http_req_failed: [`rate<${__ENV.MAX_FAILED || 0.01}`],
  },
};

export default function () {
  for (const [service, url] of Object.entries(addresses)) {
    const answer = http.get(`${url}/api/echo`, { tags: { service } });
    check(answer, { "answers 2xx": (r) => r.status >= 200 && r.status < 300 });
  }
}

function xml(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");
}

export function handleSummary(data) {
  const d = data.metrics.http_req_duration.values;
  const cut = { p50: d["p(50)"], p90: d["p(90)"], p95: d["p(95)"], p99: d["p(99)"] };
  for (const key of Object.keys(cut)) cut[key] = Math.round(cut[key] * 100) / 100;
  const cases = Object.entries(data.metrics)
    .filter(([, metric]) => metric.thresholds)
    .flatMap(([name, metric]) =>
      Object.entries(metric.thresholds).map(([rule, result]) =>
        `<testcase classname="load" name="${xml(`${name} ${rule}`)}">` +
        (result.ok ? "" : `<failure message="${xml(`${name} ${rule} not met`)}"/>`) +
        "</testcase>"));
  const failures = cases.filter((c) => c.includes("<failure")).length;
  const junit = `<?xml version="1.0"?><testsuite name="load" tests="${cases.length}" ` +
    `failures="${failures}">${cases.join("")}</testsuite>`;
  return {
    [`${artifacts}/load.json`]: JSON.stringify({ all: cut }),
    [`${artifacts}/junit.xml`]: junit,
    stdout: `load: p50 ${cut.p50} p90 ${cut.p90} p95 ${cut.p95} p99 ${cut.p99} ms, ` +
      `${failures} threshold(s) not met\n`,
  };
}
