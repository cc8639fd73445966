#!/usr/bin/env bash
# SwiftPM's incremental build does not always recompile the Swift modules that depend on a
# changed one. Three cases have crashed programs on memory laid out the old way:
# - only a C support header changed (a struct grew a field): the Swift modules that import it
#   were not compiled again;
# - in the Benchmarks package's release build, a struct of the root package grew a field
#   (Doctor.Evidence): spindle-bench kept code built for the old layout;
# - in the debug build of the tests, a class of SpindleLoop grew a field (LoopHandle) and
#   SpindleFutures kept code inlined from it for the old layout: futures against a model
#   failed until its build folder was deleted.
# Before each build, this compares a hash of what such modules are built against with the one
# recorded at the last build and, when they differ (or none was recorded), deletes the Spindle modules' build folders
# under BUILD_DIR (dependencies such as swift-nio stay built), so they are compiled again.
#   usage: forget-stale-modules.sh BUILD_DIR [--library-sources]
# --library-sources adds the root package's Swift sources to the hash: any change to the
# library then rebuilds the Spindle modules (about 20 s for the tests' debug build, a minute
# for the Benchmarks package's release build). Every build of the Makefile passes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="$1"
[ -d "$build" ] || exit 0
inputs=(CSupport/*/*.h CSupport/*/include/*.h Benchmarks/Sources/CBenchKernels/include/*.h
        Benchmarks/Sources/CBenchKernels/*.h)
if [ "${2:-}" = "--library-sources" ]; then
    mapfile -t swift < <(find Sources -name '*.swift' | LC_ALL=C sort)
    inputs+=("${swift[@]}")
fi
hash=$(cat "${inputs[@]}" 2>/dev/null | sha256sum | cut -d' ' -f1)
stamp="$build/.spindle-c-headers${2:+-and-sources}"
# No stamp yet: the folder was built by an older Makefile, against who knows what.
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
    echo "Spindle's ${2:+library sources or }C headers changed since the last build: rebuilding the Swift modules built against them"
    find "$build" -maxdepth 3 -type d \( -name 'Spindle*.build' -o -name 'BenchKit.build' \
        -o -name 'spindle_*.build' -o -name 'ExampleSupport.build' -o -name 'C*.build' \) -prune -exec rm -rf {} +
    find "$build" -maxdepth 1 -name '*.yaml' -delete
fi
echo "$hash" > "$stamp"
