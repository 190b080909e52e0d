#!/usr/bin/env bash
# Installs what building and testing tracelake needs on a Debian 12 machine
# (run as root), and prepares the kernel interfaces the sensor uses.
# Idempotent: a second run installs nothing and finishes in a second.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (eBPF loading and containerd need it)" >&2
    exit 1
  fi
}
need_root

# command -> Debian package
declare -A PKGS=(
  [clang-19]=clang-19
  [bpftool]=bpftool
  [containerd]=containerd
  [runc]=runc
  [busybox]=busybox-static
  [ip]=iproute2
  [bpftrace]=bpftrace
  [auditctl]=auditd
  [pkg-config]=pkg-config
  [protoc]=protobuf-compiler
  [cmake]=cmake
)
missing=()
for cmd in "${!PKGS[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKGS[$cmd]}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
# librdkafka (rdkafka-sys, built from source by cmake): TLS and OAUTHBEARER/OIDC need these headers.
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
[ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Tracepoints live in tracefs; the sensor mounts it too, but tools (bpftrace) want it early.
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing
fi

# pyarrow: the independent reader the lake tests check Parquet files with (scripts/check_lake.py).
if ! python3 -c "import pyarrow.parquet" >/dev/null 2>&1; then
  echo "setup: installing pyarrow"
  python3 -m pip install --quiet --root-user-action=ignore pyarrow
fi

# tansu: a Kafka-protocol broker the Kafka tests start on loopback (testkit/src/broker.rs). Installed outside
# the clone so CI keeps it between runs; the first build takes about 20 minutes.
if [ ! -x /var/tmp/tansu/bin/tansu ]; then
  echo "setup: installing tansu (Kafka-protocol broker for the tests; ~20 min the first time)"
  cargo install tansu --locked --features dynostore --root /var/tmp/tansu
fi

if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
echo "setup: ok"
