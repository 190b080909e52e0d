#!/usr/bin/env bash
# Sets up the machine and runs every check and test: formatting, clippy
# with warnings denied, and all tests (real kernel, real containers).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast "$@"
