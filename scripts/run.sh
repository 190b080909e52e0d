#!/usr/bin/env bash
# Sets up the machine for building and running only (`scripts/setup.sh run`: no test tools), builds the
# release binary and runs the embedded all-in-one sensor, writing events into the Parquet lake
# (/var/lib/tracelake/lake, see docs/schema.md). Extra arguments go to `tracelake run` (e.g. --for 10s,
# --lake DIR, --stdout for JSON lines instead, --config tracelake.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh run >&2
cargo build --release --locked -p tracelake >&2
exec "$CARGO_TARGET_DIR/release/tracelake" run "$@"
