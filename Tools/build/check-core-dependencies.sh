#!/usr/bin/env bash
# Shows that a service linking only Spindle's core products builds none of the packages the
# opt-in integrations use (swift-log, swift-metrics, swift-service-lifecycle):
#
# 1. the package graph: no target reachable from a core product depends on another package;
# 2. a build of the core products alone, in a scratch folder of its own (.build-core), holds no
#    module of those packages.
#
#   Tools/build/check-core-dependencies.sh [--graph-only]
set -euo pipefail
cd "$(dirname "$0")/../.."
SWIFT=${SWIFT:-swift}
CORE_PRODUCTS="Spindle SpindleLoop SpindleCallbacks SpindleFutures SpindleAsync SpindleTrace"
FORBIDDEN="Logging CoreMetrics Metrics ServiceLifecycle UnixSignals AsyncAlgorithms"

$SWIFT package describe --type json 2>/dev/null | python3 -c '
import json, sys
description = json.load(sys.stdin)
targets = {t["name"]: t for t in description["targets"]}
products = {p["name"]: p["targets"] for p in description["products"]}
core = sys.argv[1].split()
problems = []
for product in core:
    seen, stack = set(), list(products[product])
    while stack:
        name = stack.pop()
        if name in seen: continue
        seen.add(name)
        target = targets[name]
        for dependency in target.get("product_dependencies", []):
            problems.append(f"{product}: target {name} depends on the package product {dependency}")
        stack.extend(target.get("target_dependencies", []))
if problems:
    print("core products reach other packages:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("core: the targets of %d products (%s) depend on no other package" % (len(core), ", ".join(core)))
' "$CORE_PRODUCTS"

[ "${1:-}" = "--graph-only" ] && exit 0

for product in $CORE_PRODUCTS; do
    $SWIFT build --target "$product" --scratch-path .build-core >/dev/null 2>&1 || $SWIFT build --target "$product" --scratch-path .build-core
done
found=""
for module in $FORBIDDEN; do
    if find .build-core -name "$module.swiftmodule" -print -quit | grep -q .; then found="$found $module"; fi
done
if [ -n "$found" ]; then
    echo "core: the core products' own build holds integration modules:$found"
    exit 1
fi
echo "core: built alone (.build-core), the core products compiled none of:$(printf ' %s' $FORBIDDEN)"
