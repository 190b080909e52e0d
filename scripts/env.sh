# Sourced by the scripts: keeps the cargo target dir outside the checkout so
# a fresh clone (as CI makes) reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tracelake-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
