// k6 load script for worker-sync's HTTP endpoints (issue 6). Not run on the build machines
// (no k6 there; `npm run load:http` is the autocannon equivalent that runs here).
//
//   k6 run -e SURFACE=http://127.0.0.1:3003 -e API=http://127.0.0.1:3001 -e API_TOKEN=... load/k6/endpoints.js
//
// Scenarios: the operating surface as Kubernetes and Prometheus hit it (/health, /ready,
// /metrics), and the read side of the API with its bearer token. Thresholds encode what an
// on-call engineer needs: probes answer fast even under scrape load.
/* global __ENV */
import http from 'k6/http';
import { check } from 'k6';

const SURFACE = __ENV.SURFACE || 'http://127.0.0.1:3003';
const API = __ENV.API || 'http://127.0.0.1:3001';
const TOKEN = __ENV.API_TOKEN || '';

export const options = {
  scenarios: {
    probes: { executor: 'constant-arrival-rate', rate: 200, timeUnit: '1s', duration: '60s', preAllocatedVUs: 20, exec: 'probes' },
    scrape: { executor: 'constant-arrival-rate', rate: 5, timeUnit: '1s', duration: '60s', preAllocatedVUs: 5, exec: 'scrape' },
    api: { executor: 'constant-arrival-rate', rate: 50, timeUnit: '1s', duration: '60s', preAllocatedVUs: 10, exec: 'api' },
  },
  thresholds: {
    'http_req_duration{scenario:probes}': ['p(95)<20'],
    'http_req_duration{scenario:scrape}': ['p(95)<200'],
    'http_req_duration{scenario:api}': ['p(95)<100'],
    http_req_failed: ['rate<0.001'],
  },
};

export function probes() {
  check(http.get(`${SURFACE}/health`), { 'health 200': (r) => r.status === 200 });
  const ready = http.get(`${SURFACE}/ready`);
  check(ready, { 'ready answers': (r) => r.status === 200 || r.status === 503 });
}

export function scrape() {
  check(http.get(`${SURFACE}/metrics`), { 'metrics 200': (r) => r.status === 200 && r.body.includes('sync_events_total') });
}

export function api() {
  const params = { headers: { Authorization: `Bearer ${TOKEN}` } };
  check(http.get(`${API}/sync/status`, params), { 'status 200': (r) => r.status === 200 });
  check(http.get(`${API}/sync/conflicts?status=open&limit=50`, params), { 'conflicts 200': (r) => r.status === 200 });
  // without the token: refused, never served
  // expected: refused, never served; a 401 here is a success, not a failed request (http_req_failed)
  check(http.get(`${API}/sync/status`, { responseCallback: http.expectedStatuses(401) }), { 'no token 401': (r) => r.status === 401 });
}
