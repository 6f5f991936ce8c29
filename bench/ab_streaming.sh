#!/bin/bash
# Same-run A/B of two streamed runs, this checkout against a baseline commit (default 6c8844c, the commit before
# issue 17), each a whole `servesim run` in a fresh process, alternating, 3 rounds; prints wall seconds and peak
# RSS (KB) per run. Usage: bash bench/ab_streaming.sh [commit]
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
base=${1:-6c8844c}
tmp=$(mktemp -d)
git -C "$here" worktree add -f "$tmp/base" "$base" -q
cat > "$tmp/shared.yaml" <<'YAML'
name: ab-stream-shared
seed: 1
requests: 10000000
warmup_s: 60
workload: {arrival: {process: poisson, rate_rps: 1000.0}}
cost_model: {kind: affine, base_ms: 2.0, per_item_ms: 0.25, max_batch_size: 64}
server: {batching: {policy: dynamic, max_batch_size: 32, max_queue_delay_ms: 2.0}}
slo: {latency_p99_ms: 10.0}
outputs: {streaming: true, window_s: 3600}
YAML
sed 's/duration_s: 86400/duration_s: 14400/' "$here/scenarios/day-autoscaled.yaml" > "$tmp/day4h.yaml"
for i in 1 2 3; do
  for tree in "$tmp/base" "$here"; do
    for f in "$tmp/shared.yaml" "$tmp/day4h.yaml"; do
      s=$( { /usr/bin/time -f "%e %M" python3 -c "import sys; sys.path.insert(0, '$tree'); from sim.cli import main; sys.exit(main(['run', '$f', '--out', '$tmp/out-$i-$(basename $tree)-$(basename $f .yaml)', '--quiet']))" ; } 2>&1 | tail -1 )
      echo "$i $([ "$tree" = "$here" ] && echo this || echo "$base") $(basename "$f" .yaml) $s"
    done
  done
done
git -C "$here" worktree remove --force "$tmp/base"
rm -rf "$tmp"
