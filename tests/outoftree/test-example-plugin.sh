#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Installs natkit into a temporary prefix, builds examples/plugin out of tree
# against the installed natkit-1.pc, and checks that nat-tool loads it
# through NATKIT_PLUGIN_PATH with its rank.
set -euo pipefail

build_root=$1
source_root=$2
nat_tool=$3

tmp=$(mktemp -d -t natkit-oot-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "# installing natkit into $tmp/dest"
meson install -C "$build_root" --no-rebuild --quiet --destdir "$tmp/dest" >/dev/null
pc=$(find "$tmp/dest" -name natkit-1.pc -print -quit)
[ -n "$pc" ] || { echo "not ok 1 - natkit-1.pc was not installed"; exit 1; }
echo "ok 1 - natkit-1.pc installed ($pc)"

# The files were installed under a DESTDIR: point a copy of natkit-1.pc at
# where they really are (what a plugin author's prefix would be).
mkdir -p "$tmp/pc"
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed "s|^prefix=.*|prefix=$tmp/dest$prefix|" "$pc" >"$tmp/pc/natkit-1.pc"
export PKG_CONFIG_PATH="$tmp/pc"
if ! meson setup "$tmp/build" "$source_root/examples/plugin" >"$tmp/setup.log" 2>&1 ||
   ! ninja -C "$tmp/build" >"$tmp/build.log" 2>&1; then
  echo "not ok 2 - the example plugin builds against the installed natkit"
  sed 's/^/# /' "$tmp/setup.log" "$tmp/build.log" 2>/dev/null || true
  exit 1
fi
echo "ok 2 - the example plugin builds against the installed natkit"

# The plugin must include only <natkit/natkit.h> from the installed headers.
if grep -q -- "-I$source_root" "$tmp/build/compile_commands.json"; then
  echo "not ok 3 - the build used the source tree's headers"; exit 1
fi
echo "ok 3 - built from the installed headers only"

out=$(NATKIT_PLUGIN_PATH="$tmp/build" NATKIT_PLUGIN_SYSTEM_PATH= "$nat_tool" plugins --json)
if /usr/bin/python3 - "$out" <<'PY'
import json, sys
plugins = {p["name"]: p for p in json.loads(sys.argv[1])["plugins"]}
p = plugins.get("example")
assert p is not None, "example plugin not listed"
assert p["state"] == "loaded", p
assert p["rank"] == 64 and p["kind"] == "traversal", p
assert p["version"] == "1.0", p
PY
then
  echo "ok 4 - nat-tool loads the example through NATKIT_PLUGIN_PATH (rank marginal)"
else
  echo "not ok 4 - nat-tool loads the example plugin"; echo "$out" | sed 's/^/# /'; exit 1
fi
echo "1..4"
