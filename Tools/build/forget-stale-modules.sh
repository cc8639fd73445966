#!/usr/bin/env bash
# SwiftPM's incremental build does not always recompile the Swift modules that import a C
# header when only the header changed (a struct grew a field): it can link objects built against
# the old layout, and the program then crashes on corrupted memory. Before each build, this
# compares a hash of the C support headers with the one recorded at the last build and, when
# they differ, deletes the Swift modules' build folders under BUILD_DIR (dependencies such as
# swift-nio stay built), so they are compiled again.
#   usage: forget-stale-modules.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
build="$1"
[ -d "$build" ] || exit 0
hash=$(cat CSupport/*/*.h CSupport/*/include/*.h Benchmarks/Sources/CBenchKernels/include/*.h \
       Benchmarks/Sources/CBenchKernels/*.h 2>/dev/null | sha256sum | cut -d' ' -f1)
stamp="$build/.spindle-c-headers"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$hash" ]; then
    echo "C headers changed since the last build: rebuilding the Swift modules that import them"
    find "$build" -maxdepth 3 -type d \( -name 'Spindle*.build' -o -name 'BenchKit.build' \
        -o -name 'spindle_*.build' -o -name 'ExampleSupport.build' -o -name 'C*.build' \) -prune -exec rm -rf {} +
    find "$build" -maxdepth 1 -name '*.yaml' -delete
fi
echo "$hash" > "$stamp"
