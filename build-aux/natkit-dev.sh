#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# One entry point for a fresh Debian 12 machine:
#   build-aux/natkit-dev.sh demo   install what is needed, build, run the demo
#   build-aux/natkit-dev.sh test   install what is needed, build, run every test
#                                  (gcc build with -Werror, then a clang build,
#                                  then the unit suite under ASan/UBSan)
# Installing packages needs root (apt-get); everything else runs as any user.
set -euo pipefail

cd "$(dirname "$0")/.."
top=$PWD

# Debian 12 packages. --no-install-recommends keeps wireguard & co from
# pulling in a kernel image.
packages=(
  meson ninja-build pkg-config gcc libc6-dev clang libclang-rt-14-dev zlib1g-dev
  libglib2.0-dev libjson-glib-dev libgnutls28-dev libnice-dev
  gobject-introspection libgirepository1.0-dev python3-gi python3-cryptography gjs gi-docgen
  glib-networking
  libgupnp-igd-1.0-dev libgupnp-1.6-dev libgssdp-1.6-dev
  coturn nftables iproute2 procps miniupnpd-nftables miniupnpc natpmpc
  nettle-dev wireguard-go wireguard-tools
  gir1.2-gtk-4.0 gir1.2-adw-1 xvfb xauth desktop-file-utils appstream
)

install_deps () {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "natkit-dev: missing packages: ${missing[*]}" >&2
    echo "natkit-dev: run this script as root, or: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "natkit-dev: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# setup_build DIR [meson options…]
setup_build () {
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
  meson compile -C "$dir"
}

# One closing line over every run: "N passed, N failed, N skipped".
summarize () {
  /usr/bin/python3 - "$@" <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            result = json.loads(line)["result"]
            if result in ("OK", "EXPECTEDFAIL"):
                counts["passed"] += 1
            elif result == "SKIP":
                counts["skipped"] += 1
            else:
                counts["failed"] += 1
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
PY
}

cmd=${1:-}
case "$cmd" in
  demo)
    install_deps
    setup_build _build -Dwerror=true --auto-features=enabled
    echo
    echo "== nat-tool version"
    meson devenv -C _build nat-tool version
    echo
    echo "== nat-tool plugins (the plugins natkit found in the build tree)"
    meson devenv -C _build nat-tool plugins
    echo
    echo "== nat-tool demo: a natkit-server and two peers in one process, over loopback"
    meson devenv -C _build nat-tool demo
    echo
    if [ "$(id -u)" -eq 0 ]; then
      echo "== two peers behind NATs of the lab (network namespaces) connect through natkit-server"
      # the build tree's plugins, as `meson devenv` gives them to nat-tool
      plugin_path=$(find "$top/_build/plugins" -mindepth 1 -maxdepth 1 -type d \
                      ! -name '*.p' | sort | tr '\n' ':')
      NAT_TOOL="$top/_build/tools/nat-tool" NATKIT_SERVER="$top/_build/tools/natkit-server" \
      NATKIT_PLUGIN_PATH="$plugin_path" NATKIT_PLUGIN_SYSTEM_PATH= \
        /usr/bin/python3 build-aux/natkit-lab-demo.py
    else
      echo "(run as root to see two peers connect from behind the lab's NATs)"
    fi
    ;;
  test)
    install_deps
    echo "== gcc build, every plugin, API reference, warnings are errors"
    setup_build _build -Dwerror=true --auto-features=enabled -Ddocs=true
    meson test -C _build --print-errorlogs --num-processes 2
    echo
    echo "== clang build, warnings are errors"
    CC=clang setup_build _build-clang -Dwerror=true --auto-features=enabled \
      -Dintrospection=disabled
    echo
    echo "== unit, fuzz, lab-detect and lab-map tests under AddressSanitizer and UndefinedBehaviorSanitizer (libFuzzer)"
    CC=clang setup_build _build-asan -Db_sanitize=address,undefined \
      -Db_lundef=false -Dintrospection=disabled --auto-features=enabled
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
      meson test -C _build-asan --suite unit --suite fuzz --print-errorlogs --num-processes 2
    # Detection through every lab NAT and port mapping against miniupnpd
    # with the sanitized nat-tool and plugins (as root).
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
      meson test -C _build-asan test_lab_detect test_lab_map --print-errorlogs --logbase lablog
    summarize _build/meson-logs/testlog.json _build-asan/meson-logs/testlog.json \
      _build-asan/meson-logs/lablog.json
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
