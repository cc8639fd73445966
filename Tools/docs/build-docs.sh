#!/bin/bash
# Builds the DocC documentation of Spindle's library modules and checks it: every public symbol
# documented, every symbol link resolved. Writes one archive per module and a combined one,
# .build/docs/combined/Spindle.doccarchive: a static site (serve the folder at a web server's
# root, e.g. `python3 -m http.server -d .build/docs/combined/Spindle.doccarchive`, and open
# /documentation).
#
# Usage: Tools/docs/build-docs.sh [--quiet]
# Exit status: 0 when clean; 1 with the list of problems otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
quiet=${1:-}
out=.build/docs
graphs=.build/docs-symbol-graphs
rm -rf "$out" "$graphs"
mkdir -p "$out" "$graphs"

# docc ships with the Swift toolchain, next to `swift`.
docc="$(dirname "$(command -v "${SWIFT:-swift}")")/docc"
[ -x "$docc" ] || docc=$(command -v docc) || {
    echo "docc not found: it ships with the Swift toolchain (next to swift)"
    exit 1
}

# Symbol graphs of the public API (builds the package in debug if needed).
"${SWIFT:-swift}" package dump-symbol-graph --minimum-access-level public --emit-extension-block-symbols >"$out/dump.log" 2>&1 || {
    cat "$out/dump.log"
    exit 1
}
source_graphs=$(sed -n 's/^Files written to //p' "$out/dump.log")

# In dependency order: each module links against the archives of the modules it imports.
modules=(SpindleLoop Spindle SpindleCallbacks SpindleFutures SpindleAsync SpindleTrace SpindleLogging SpindleMetrics
    SpindleServiceLifecycle)
declare -A deps=(
    [SpindleLoop]=""
    [Spindle]="SpindleLoop"
    [SpindleCallbacks]="SpindleLoop"
    [SpindleFutures]="SpindleLoop Spindle SpindleCallbacks"
    [SpindleAsync]="SpindleLoop Spindle"
    [SpindleTrace]="SpindleLoop Spindle"
    [SpindleLogging]="SpindleLoop"
    [SpindleMetrics]="SpindleLoop Spindle"
    [SpindleServiceLifecycle]="SpindleLoop Spindle"
)
problems=0
for module in "${modules[@]}"; do
    mkdir -p "$graphs/$module"
    cp "$source_graphs/$module.symbols.json" "$graphs/$module/"
    cp "$source_graphs/$module"@*.symbols.json "$graphs/$module/" 2>/dev/null || true
    catalog=()
    [ -d "Sources/$module/Docs.docc" ] && catalog=("Sources/$module/Docs.docc")
    dependencies=()
    for dependency in ${deps[$module]}; do dependencies+=(--dependency "$out/$dependency.doccarchive"); done
    if ! "$docc" convert "${catalog[@]}" --additional-symbol-graph-dir "$graphs/$module" \
        --fallback-display-name "$module" --fallback-bundle-identifier "dev.spindle.$module" \
        --enable-experimental-external-link-support "${dependencies[@]}" \
        --output-path "$out/$module.doccarchive" >"$out/$module.log" 2>&1; then
        problems=1
    fi
    # Warnings (unresolved links, undocumented parameters) fail the check.
    if grep -q "^warning:\|: warning:\|^error:\|: error:" "$out/$module.log"; then
        echo "$module:"
        grep -A3 "warning:\|error:" "$out/$module.log" | sed 's/^/  /'
        problems=1
    fi
done
"${SWIFT:-swift}" Tools/docs/coverage.swift "$source_graphs" "${modules[@]}" || problems=1
archives=()
mkdir -p "$out/combined"
for module in "${modules[@]}"; do archives+=("$out/$module.doccarchive"); done
"$docc" merge "${archives[@]}" --synthesized-landing-page-name Spindle --output-path "$out/combined/Spindle.doccarchive" \
    >"$out/merge.log" 2>&1 || { cat "$out/merge.log"; problems=1; }
if [ -z "$quiet" ]; then
    echo "docs: $out/combined/Spindle.doccarchive (a static site: serve it at a web server's root," \
        "open /documentation)"
fi
exit $problems
