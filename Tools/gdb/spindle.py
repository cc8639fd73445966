# Spindle fibers in gdb.
#
#   (gdb) source Tools/gdb/spindle.py
#   (gdb) info fibers          every live fiber of every loop: id, name, state, park reason, stack
#   (gdb) fiber bt ID          backtrace of a suspended fiber, from its saved fcontext registers
#   (gdb) fiber bt -raw ID     the same with the Swift symbols left mangled
#
# Fibers are found through the scheduler registry (spindle_sched_registry, a list of every live
# scheduler) and each scheduler's list of live fibers (all_head / all_next). A suspended fiber's
# registers are the ones Boost.Context's jump_fcontext pushed on its stack (x86-64 System V):
# the saved context points at [mxcsr/x87 cw, r12, r13, r14, r15, rbx, rbp, return address], and
# the stack pointer was just above them. `fiber bt` loads those into the stopped thread, prints
# gdb's backtrace, and puts the thread's own registers back — so it needs a live process stopped
# in gdb (not a core file). gdb does not demangle Swift, so `fiber bt` passes its frames through
# `swift-demangle --simplified` (found next to `swift` on PATH, or at $SWIFT_DEMANGLE) when it
# is there: `static Fiber.sleep(for:)` rather than `$s7Spindle5FiberO5sleep3forys8DurationV_tKFZ`.
import os
import shutil
import subprocess

import gdb

STATES = {0: "created", 1: "runnable", 2: "running", 3: "parked", 4: "finished"}
# Fiber.ParkReason's raw values (Sources/Spindle/Fiber+State.swift).
PARK_REASONS = [
    None, "sleep", "join", "read", "write", "connect", "accept", "file", "resolve", "signal",
    "channelSend", "channelReceive", "select", "mutex", "semaphore", "event", "waitGroup",
    "future", "async", "other", "crossLoopCall", "crossLoopSend", "crossLoopReceive",
]
SAVED = [("r12", 0x08), ("r13", 0x10), ("r14", 0x18), ("r15", 0x20), ("rbx", 0x28), ("rbp", 0x30)]


def swift_demangle():
    """The swift-demangle program, or None."""
    explicit = os.environ.get("SWIFT_DEMANGLE")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("swift-demangle")
    if found:
        return found
    swift = shutil.which("swift")
    if swift:
        beside = os.path.join(os.path.dirname(os.path.realpath(swift)), "swift-demangle")
        if os.access(beside, os.X_OK):
            return beside
    return None


def demangled(text):
    """`text` with its Swift symbols demangled, and a note saying why if they cannot be."""
    if "$s" not in text:
        return text
    program = swift_demangle()
    if program is None:
        return text + "(swift-demangle not found: Swift symbols left mangled; set SWIFT_DEMANGLE to its path)\n"
    try:
        done = subprocess.run([program, "--simplified"], input=text, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return text + "(%s failed: %s; Swift symbols left mangled)\n" % (program, error)
    if done.returncode != 0:
        return text + "(%s exited with status %d; Swift symbols left mangled)\n" % (program, done.returncode)
    return done.stdout


def schedulers():
    try:
        sched = gdb.parse_and_eval("spindle_sched_registry")
    except gdb.error:
        raise gdb.GdbError("no Spindle runtime in this program (spindle_sched_registry not found)")
    while int(sched) != 0:
        yield sched
        sched = sched["registry_next"]


def fibers():
    for sched in schedulers():
        fiber = sched["all_head"]
        while int(fiber) != 0:
            yield sched, fiber
            fiber = fiber["all_next"]


def fiber_name(fiber):
    try:
        if not int(fiber["named"]):
            return ""
        return fiber["name"].string()
    except (gdb.error, UnicodeDecodeError):
        return "?"


def describe(fiber):
    state = STATES.get(int(fiber["state"]), "state %d" % int(fiber["state"]))
    if state == "parked":
        reason = int(fiber["park_reason"])
        label = PARK_REASONS[reason] if 0 < reason < len(PARK_REASONS) else "reason %d" % reason
        detail = int(fiber["park_detail"])
        state = "parked (%s%s)" % (label, " #%d" % detail if label == "join" and detail else "")
    return state


class InfoFibers(gdb.Command):
    """List every live Spindle fiber: id, name, state (park reason), stack range."""

    def __init__(self):
        super().__init__("info fibers", gdb.COMMAND_STATUS)

    def invoke(self, argument, from_tty):
        count = 0
        for sched, fiber in fibers():
            count += 1
            lo, hi = int(fiber["stack_lo"]), int(fiber["stack_hi"])
            gdb.write("  #%-6d %-24s %-24s stack %#x-%#x (%d KiB)  loop thread %#x\n" % (
                int(fiber["id"]), '"%s"' % fiber_name(fiber), describe(fiber), lo, hi,
                int(fiber["stack_size"]) // 1024, int(sched["owner_thread"])))
        if count == 0:
            gdb.write("no live fibers\n")


class FiberPrefix(gdb.Command):
    """Spindle fiber commands: fiber bt ID."""

    def __init__(self):
        super().__init__("fiber", gdb.COMMAND_STACK, prefix=True)


class FiberBacktrace(gdb.Command):
    """Backtrace of the suspended fiber with this id (see `info fibers`)."""

    def __init__(self):
        super().__init__("fiber bt", gdb.COMMAND_STACK)

    def invoke(self, argument, from_tty):
        args = gdb.string_to_argv(argument)
        raw = "-raw" in args
        args = [arg for arg in args if arg != "-raw"]
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            raise gdb.GdbError("usage: fiber bt [-raw] ID")
        wanted = int(args[0].lstrip("#"))
        match = next((f for _, f in fibers() if int(f["id"]) == wanted), None)
        if match is None:
            raise gdb.GdbError("no live fiber #%d (info fibers lists them)" % wanted)
        if int(match["state"]) == 2:
            raise gdb.GdbError("fiber #%d is running: `bt` on its loop's thread shows it" % wanted)
        context = int(match["context"])
        if context == 0:
            raise gdb.GdbError("fiber #%d has not started yet: it has no frames" % wanted)
        arch = gdb.selected_frame().architecture().name()
        if "x86-64" not in arch:
            raise gdb.GdbError("fiber bt knows x86-64's fcontext layout only (this is %s)" % arch)
        inferior = gdb.selected_inferior()

        def word(address):
            return int.from_bytes(bytes(inferior.read_memory(address, 8)), "little")

        gdb.execute("frame 0", to_string=True)
        names = ["rip", "rsp"] + [name for name, _ in SAVED]
        saved = {name: int(gdb.parse_and_eval("$" + name)) & 0xFFFFFFFFFFFFFFFF for name in names}
        try:
            for name, offset in SAVED:
                gdb.execute("set $%s = %d" % (name, word(context + offset)), to_string=True)
            gdb.execute("set $rsp = %d" % (context + 0x40), to_string=True)
            gdb.execute("set $rip = %d" % word(context + 0x38), to_string=True)
            gdb.write('fiber #%d "%s", %s:\n' % (wanted, fiber_name(match), describe(match)))
            frames = gdb.execute("bt", to_string=True)
            gdb.write(frames if raw else demangled(frames))
        finally:
            gdb.execute("frame 0", to_string=True)
            for name in names:
                gdb.execute("set $%s = %d" % (name, saved[name]), to_string=True)


InfoFibers()
FiberPrefix()
FiberBacktrace()
gdb.write("Spindle: `info fibers` lists fibers, `fiber bt ID` shows a suspended fiber's backtrace\n")
