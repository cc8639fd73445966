// spindle-echo: a TCP echo server on fibers, one fiber per connection.
//
//   spindle-echo [--host 127.0.0.1] [--port 7007] [--loops N] [--acceptor]
//
// Prints where it listens ("spindle-echo listening on 127.0.0.1:7007"), echoes every byte back,
// and stops cleanly on SIGINT or SIGTERM: it stops accepting, closes every connection, and
// exits 0. It runs N loops (default: one per CPU), each on its own thread with its own listener
// on the port (SO_REUSEPORT), or with --acceptor one listener that hands connections to the
// loops in turn.
import ExampleSupport
import Glibc
import Spindle
import SpindleLoop

let options = parseServiceArguments("spindle-echo", defaultPort: 7007)
do {
    try runService("spindle-echo", options) { connection in
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while let count = try? connection.read(into: &buffer), count > 0 {
            let sent: Void? = try? buffer.withUnsafeBytes {
                try connection.write(UnsafeRawBufferPointer(rebasing: $0[..<count]))
            }
            if sent == nil { return }
        }
    }
} catch {
    complain("spindle-echo", "\(error)")
    exit(1)
}
