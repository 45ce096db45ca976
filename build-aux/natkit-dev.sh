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
  gobject-introspection libgirepository1.0-dev python3-gi gjs gi-docgen
  libgupnp-igd-1.0-dev libgupnp-1.6-dev libgssdp-1.6-dev
  coturn nftables iproute2 procps miniupnpd-nftables miniupnpc natpmpc
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
    if [ "$(id -u)" -eq 0 ]; then
      echo "== nat-tool detect, from behind two NATs of the lab (network namespaces)"
      NAT_TOOL="$top/_build/tools/nat-tool" /usr/bin/python3 - <<'PY'
import os, sys
sys.path.insert(0, "tests/lab")
from natlab import Lab
tool = os.environ["NAT_TOOL"]
with Lab(site_a="port-restricted", site_b="symmetric", hairpin_a=True) as lab:
    for site in (lab.a, lab.b):
        print("\n-- a host behind a %s NAT%s:" % (site.nat, " with hairpinning" if site.hairpin else ""),
              flush=True)
        plugins = ":".join(os.path.abspath("_build/plugins/" + p) for p in ("natpmp", "upnp"))
        lab.run(site.host, "NATKIT_PLUGIN_SYSTEM_PATH= NATKIT_PLUGIN_PATH=%s %s detect --stun %s:%d"
                % (plugins, tool, *lab.stun_primary), capture=False)
PY
      echo
      echo "== nat-tool map: a port forwarded by the lab router's miniupnpd (PCP, NAT-PMP, UPnP-IGD)"
      NAT_TOOL="$top/_build/tools/nat-tool" /usr/bin/python3 - <<'PY'
import os, shutil, signal, sys, tempfile, time
sys.path.insert(0, "tests/lab")
from natlab import Lab
tool = os.environ["NAT_TOOL"]
state = tempfile.mkdtemp(prefix="natkit-demo-")
plugins = ":".join(os.path.abspath("_build/plugins/" + p) for p in ("natpmp", "upnp"))
env = ("NATKIT_PLUGIN_SYSTEM_PATH= NATKIT_PLUGIN_PATH=%s XDG_STATE_HOME=%s XDG_CONFIG_HOME=%s"
       % (plugins, state, state))
with Lab(site_a="port-restricted", site_b="symmetric", turn=True) as lab:
    lab.start_miniupnpd("a")
    for method in ("pcp", "natpmp", "upnp"):
        print("\n-- nat-tool map udp 5000 --method %s" % method, flush=True)
        p = lab.popen(lab.a.host, "exec env %s %s map udp 5000 --method %s" % (env, tool, method))
        time.sleep(1.0)
        print("   the router forwards: %s" % lab.miniupnpd_rules("a"), flush=True)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
        print("   after Ctrl+C: %s" % (lab.miniupnpd_rules("a") or "nothing left"), flush=True)
shutil.rmtree(state, ignore_errors=True)
PY
    else
      echo "(run as root to also see nat-tool detect from behind the lab's NATs)"
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
