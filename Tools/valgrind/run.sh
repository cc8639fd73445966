#!/usr/bin/env bash
# make valgrind: Spindle's programs under memcheck, with the fiber stacks registered
# (StackPool calls VALGRIND_STACK_REGISTER when it runs under Valgrind). Any memcheck error or
# definitely-lost block fails the run.
#
# What runs: spindle-gdb-demo (fibers parked in sleeps, cancelled, joined) and spindle-echo
# (a fiber per connection) serving 200 round trips on 4 connections, then stopped by SIGINT.
# The Swift Testing runner itself cannot run under Valgrind 3.19 here: Valgrind stops with an
# internal SIGSEGV in libdispatch's signal thread before the first test ("the 'impossible'
# happened"), so the suite runs under ASan/LSan (make asan) instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build --product spindle-gdb-demo >/dev/null
swift build --product spindle-echo >/dev/null
bin=$(swift build --show-bin-path)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Valgrind 3.19 cannot read the DWARF 5 that Swift 6's toolchain emits: strip the debug sections
# from copies (the symbol table stays, so reports still name functions).
for program in spindle-gdb-demo spindle-echo; do
    cp "$bin/$program" "$work/$program"
    strip --strip-debug "$work/$program"
done
memcheck=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite
          --errors-for-leak-kinds=definite --num-callers=30 -q)

echo "== memcheck: spindle-gdb-demo"
"${memcheck[@]}" "$work/spindle-gdb-demo"

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
