#!/usr/bin/env bash
# Sets up the machine, builds tracelake and runs the embedded all-in-one
# sensor, printing events as JSON lines. Extra arguments go to `tracelake run`
# (e.g. --for 10s, --config tracelake.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh >&2
cargo build --release --locked -p tracelake >&2
exec "$CARGO_TARGET_DIR/release/tracelake" run --stdout "$@"
