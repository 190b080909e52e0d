#!/usr/bin/env bash
# Renders the plain manifests in deploy/ from the Helm chart (deploy/helm/tracelake), the one source of the
# Kubernetes manifests: `helm template` with the chart's default values, release "tracelake" in namespace
# "tracelake", plus the Namespace object (namespace.create, off by default for `helm install --create-namespace`).
#   scripts/render-manifests.sh [OUTDIR]    (default: deploy/; tracelake/tests/chart.rs renders into a temp dir
#                                            and fails when the checked-in files differ)
# Helm: $HELM, else /var/tmp/tracelake-tools/bin/helm (scripts/setup.sh installs it), else helm on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-deploy}
helm=${HELM:-/var/tmp/tracelake-tools/bin/helm}
[ -x "$helm" ] || helm=$(command -v helm) || { echo "render-manifests: no helm; run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$out"
for t in namespace rbac configmap daemonset lake services; do
  {
    echo "# Rendered from deploy/helm/tracelake (templates/$t.yaml) by scripts/render-manifests.sh with the"
    echo "# chart's default values: edit the chart, then run that script. Install: kubectl apply -f"
    echo "# deploy/namespace.yaml, then kubectl apply -f deploy/ (or helm install: docs/helm.md)."
    "$helm" template tracelake deploy/helm/tracelake --namespace tracelake --set namespace.create=true \
      --show-only "templates/$t.yaml"
  } > "$out/$t.yaml.tmp"
  mv "$out/$t.yaml.tmp" "$out/$t.yaml"
done
