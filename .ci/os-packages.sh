#!/usr/bin/env bash
# Install the OS packages the test suite runs for real (nginx with the Lua
# module, LuaJIT, luacheck, wrk), only when something is missing.
set -euo pipefail
PACKAGES=(nginx-core libnginx-mod-http-lua lua-resty-core lua-resty-lrucache lua-cjson luajit2 lua-check wrk)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nginx package starts a system nginx on :80; the tests need none.
if pgrep -f "nginx: master process /usr/sbin/nginx -g" >/dev/null 2>&1; then
  nginx -s quit 2>/dev/null || true
fi
