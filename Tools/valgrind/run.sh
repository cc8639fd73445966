#!/usr/bin/env bash
# make valgrind: the whole test suite, then Spindle's programs, under memcheck with the fiber
# stacks registered (StackPool calls VALGRIND_STACK_REGISTER when it runs under Valgrind). Any
# memcheck error or definitely-lost block fails the run.
#
# The suite: the Swift Testing runner with Tools/valgrind/dispatch-main.c preloaded (Valgrind
# 3.19 crashes on the way libdispatch parks an async main's thread; see that file) and
# Tools/valgrind/swift-runtime.supp (reports from the Swift runtime's own metadata set-up). The
# programs the tests start (spindle-echo, spindle-http, spindle-gdb-demo, spindle-doctor-demo,
# spindle-mistakes, spindle-doctor, exit tests) run natively: Valgrind follows only the runner.
#
# Then spindle-gdb-demo (fibers parked in sleeps, cancelled, joined), spindle-doctor-demo
# writing its trace (SPINDLE_TRACE) and spindle-doctor reading it, and spindle-echo (a fiber
# per connection) serving 200 round trips on 4 connections, then stopped by SIGINT.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash Tools/build/forget-stale-modules.sh .build --library-sources
swift build --build-tests >/dev/null
bin=$(swift build --show-bin-path)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
memcheck=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite
          --errors-for-leak-kinds=definite --num-callers=30 -q
          --suppressions=Tools/valgrind/swift-runtime.supp)

echo "== memcheck: the test suite (a few minutes)"
# The tests find the example programs next to the runner.
mkdir "$work/suite"
cp "$bin/SpindlePackageTests.xctest" "$work/suite/"
strip --strip-debug "$work/suite/SpindlePackageTests.xctest"
for program in spindle-echo spindle-http spindle-gdb-demo spindle-doctor-demo spindle-doctor spindle-mistakes; do
    cp "$bin/$program" "$work/suite/"
done
cc -shared -fPIC -O2 -o "$work/dispatch-main.so" Tools/valgrind/dispatch-main.c -lpthread
LD_PRELOAD="$work/dispatch-main.so" "${memcheck[@]}" "$work/suite/SpindlePackageTests.xctest" \
    --testing-library swift-testing > "$work/suite.log" 2>&1 || {
    status=$?
    # memcheck's own lines (==pid==) can be anywhere in a long log: show them all first.
    grep -E '^==[0-9]+==' "$work/suite.log" | head -200 || true
    # So are a failed test's issues, which a long log's tail does not show.
    grep -E '✘|recorded an issue' "$work/suite.log" | head -40 || true
    tail -40 "$work/suite.log"
    echo "the test suite under memcheck failed with exit status $status (memcheck errors use 99)"
    exit 1
}
grep -E "Test run with" "$work/suite.log"

# Valgrind 3.19 cannot read the DWARF 5 that Swift 6's toolchain emits: strip the debug sections
# from copies (the symbol table stays, so reports still name functions).
for program in spindle-gdb-demo spindle-doctor-demo spindle-doctor spindle-echo; do
    cp "$bin/$program" "$work/$program"
    strip --strip-debug "$work/$program"
done

echo "== memcheck: spindle-gdb-demo"
"${memcheck[@]}" "$work/spindle-gdb-demo"

echo "== memcheck: spindle-doctor-demo --busy writing its trace, then spindle-doctor reading it"
SPINDLE_TRACE="$work/busy.json" "${memcheck[@]}" "$work/spindle-doctor-demo" --busy
# Exit status 1: it names the busy polling (99 would be a memcheck error).
status=0
"${memcheck[@]}" "$work/spindle-doctor" "$work/busy.json" > "$work/doctor.out" || status=$?
cat "$work/doctor.out"
[ "$status" -eq 1 ] && grep -q "busy-yield polling" "$work/doctor.out" \
    || { echo "spindle-doctor under memcheck exited with $status"; exit 1; }

echo "== memcheck: spindle-echo, 4 connections x 50 round trips"
"${memcheck[@]}" "$work/spindle-echo" --host 127.0.0.1 --port 0 > "$work/echo.out" 2> "$work/echo.err" &
server=$!
for _ in $(seq 1 300); do
    grep -q "listening on" "$work/echo.out" 2>/dev/null && break
    sleep 0.1
done
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/echo.out")
[ -n "$port" ] || { echo "spindle-echo did not start:"; cat "$work/echo.out" "$work/echo.err"; exit 1; }
for connection in 1 2 3 4; do
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    for round in $(seq 1 50); do
        message="connection $connection round $round"
        printf '%s\n' "$message" >&3
        IFS= read -r -t 30 reply <&3
        [ "$reply" = "$message" ] || { echo "echo mismatch: sent '$message', got '$reply'"; exit 1; }
    done
    exec 3>&-
done
kill -INT "$server"
status=0
wait "$server" || status=$?
cat "$work/echo.err"
[ "$status" -eq 0 ] || { echo "spindle-echo under memcheck exited with $status"; exit 1; }
echo "memcheck: no error, no definitely lost block"
