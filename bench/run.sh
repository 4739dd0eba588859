#!/usr/bin/env bash
# Load benchmark (see docs/benchmarks.md). Needs wrk (`apt-get install -y wrk`) and an expendable
# PostgreSQL database (BENCH_PG_URL, default postgresql+asyncpg://postgres@127.0.0.1:5432/bench).
# Extra arguments go to bench/bench.py, e.g. `bench/run.sh --duration 5 --targets ceiling`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "wrk is not installed; on Debian: apt-get install -y wrk" >&2
  exit 2
fi
exec .venv/bin/python bench/bench.py "$@"
