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
