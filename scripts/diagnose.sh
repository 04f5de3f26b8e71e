#!/usr/bin/env bash
# The operator runbook's diagnostic checks, in one run (docs/RUNBOOK.md, "Diagnostics").
#
#   bash scripts/diagnose.sh                       against the local stack and a worker on 127.0.0.1
#   bash scripts/diagnose.sh --kubectl [-n NS]     against the cluster: deployment/worker-sync in NS (sync-system)
#   bash scripts/diagnose.sh --surface URL         the worker's operating surface (default http://127.0.0.1:3003)
#
# Each check prints ok or FAIL with what it saw. Exit 0 when every check passed, 1 when one
# failed, 2 on a usage error. It changes nothing.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=local ns=sync-system surface=${SURFACE:-http://127.0.0.1:3003}
while (($#)); do
  case $1 in
    --kubectl) mode=kubectl ;;
    -n | --namespace) ns=${2:?}; shift ;;
    --surface) surface=${2:?}; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "diagnose: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

failed=0
check() { # check <name> <command...>: runs it, prints its first lines
  local name=$1 out rc
  shift
  out=$("$@" 2>&1); rc=$?
  if ((rc == 0)); then printf 'ok    %s\n' "$name"; else printf 'FAIL  %s (exit %d)\n' "$name" "$rc"; failed=1; fi
  [[ -n $out ]] && printf '%s\n' "$out" | head -n 15 | sed 's/^/      /'
  return 0
}

if [[ $mode == kubectl ]]; then
  k=(kubectl -n "$ns")
  check "pods (kubectl get pods -l app=worker-sync)" "${k[@]}" get pods -l app=worker-sync -o wide
  check "recent logs (kubectl logs --tail=50)" "${k[@]}" logs deployment/worker-sync --tail=50
  check "/health" "${k[@]}" exec deployment/worker-sync -- node -e "fetch('http://127.0.0.1:3003/health').then(async r=>{console.log(r.status, await r.text()); process.exit(r.ok?0:1)})"
  check "/ready" "${k[@]}" exec deployment/worker-sync -- node -e "fetch('http://127.0.0.1:3003/ready').then(async r=>{console.log(r.status, await r.text()); process.exit(r.ok?0:1)})"
  check "health:full" "${k[@]}" exec deployment/worker-sync -- npm run -s health:full
  check "key metrics" bash -o pipefail -c "${k[*]} exec deployment/worker-sync -- node -e \"fetch('http://127.0.0.1:3003/metrics').then(r=>r.text()).then(t=>console.log(t))\" | grep -E '^(queue_depth|sync_lag_ms|sync_circuit_open|sync_emergency_stop|sync_paused|sync_partitions_owned)(\\{| )'"
  check "network policies" "${k[@]}" get networkpolicy
  check "HPA" "${k[@]}" get hpa worker-sync
else
  check "local stack (stack.sh status)" bash deploy/local/stack.sh status
  check "/health ($surface)" curl -fsS -m 3 "$surface/health"
  check "/ready ($surface)" curl -fsS -m 3 "$surface/ready"
  check "health:full" node bin/worker-sync.js health full
  check "key metrics" bash -o pipefail -c "curl -fsS -m 5 '$surface/metrics' | grep -E '^(queue_depth|sync_lag_ms|sync_circuit_open|sync_emergency_stop|sync_paused|sync_partitions_owned|sync_dead_letters_total)(\\{| )' | head -n 20"
  check "topology (config check)" node bin/worker-sync.js config check
fi
((failed)) && echo "diagnose: something failed (docs/RUNBOOK.md says what each failure means)" || echo "diagnose: all checks passed"
exit "$failed"
