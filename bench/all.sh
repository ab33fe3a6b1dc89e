#!/usr/bin/env bash
# make bench: start the local stack with its edge (make run EDGE=1), run the
# signer, origin and play scenarios against it, leave JSON and HTML reports
# in .data/bench/, and stop the stack again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.data/bench
duration=${BENCH_DURATION:-10s}
mkdir -p "$out" .data/bin
log=$out/stack.log

# The launcher is built and run directly (not through go run) so that the
# interrupt reaches it and it stops every service and PostgreSQL.
go build -o .data/bin/local ./deploy/local
EDGE=1 .data/bin/local >"$log" 2>&1 &
stack=$!
trap 'kill -INT $stack 2>/dev/null || true; wait $stack 2>/dev/null || true' EXIT

echo "bench: starting the stack (log: $log)"
for _ in $(seq 600); do
	grep -q "playgate is running" "$log" && break
	kill -0 $stack 2>/dev/null || { cat "$log"; echo "bench: the stack stopped"; exit 1; }
	sleep 1
done
grep -q "playgate is running" "$log" || { echo "bench: the stack is not up after 10 minutes; see $log"; exit 1; }

set -a
. .data/secrets.env
set +a
go build -o .data/bin/bench ./bench
seed=()
[ -s "$out/seed.json" ] && seed=(-reuse "$out/seed.json")
.data/bin/bench signer -duration "$duration" "${seed[@]}" -seed-out "$out/seed.json" -json "$out/signer.json" -html "$out/signer.html"
# Behind the edge the origin answers only to the edge's shared secret.
ORIGIN_AUTH=header .data/bin/bench origin -duration "$duration" -nginx-root .data/objects -json "$out/origin.json" -html "$out/origin.html"
.data/bin/bench play -duration "$duration" -json "$out/play.json" -html "$out/play.html"
echo "bench: reports in $out/{signer,origin,play}.{json,html}"
