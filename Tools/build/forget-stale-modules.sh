#!/usr/bin/env bash
# SwiftPM's incremental build does not always recompile the Swift modules that depend on a
# changed one. Measured with Swift 6.3.1 (2026-12-07): in the Benchmarks package's release
# build, give the public struct Doctor.Evidence (SpindleTrace) one more field and build again
# without this script. SwiftPM recompiles SpindleTrace's three files and nothing else. Yet
# spindle-bench's Run+Fanout.swift builds that struct on its stack: its diagnosePitfalls kept a
# frame of 0x458 bytes, where a clean build of the same source reserves 0x4c8. The callee then
# writes the larger struct into a frame sized for the smaller one. Earlier sessions saw the same
# with a C support header (a struct grew a field, and the Swift modules importing it were not
# recompiled) and with a class of SpindleLoop (LoopHandle) whose layout SpindleFutures had
# inlined in the tests' debug build. The same two experiments on Swift 6.3.1 (a field added to
# spindle_sched_t and to EventLoop) were recompiled correctly.
# Before each build, this compares a hash of what such modules are built against with the one
# recorded at the last build and, when they differ (or none was recorded), deletes the Spindle
# modules' build folders under BUILD_DIR (dependencies such as swift-nio stay built), so they
# are compiled again.
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
    # The cached build description lists each module's source files: a file added to a library
    # target was not compiled until it was deleted (Benchmarks release build, 2026-12-07).
    find "$build" -maxdepth 2 -name 'description.json' -delete
fi
echo "$hash" > "$stamp"
