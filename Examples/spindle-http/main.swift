// spindle-http: a minimal HTTP/1.1 server on fibers, one fiber per connection.
//
//   spindle-http [--host 127.0.0.1] [--port 8080] [--loops N] [--acceptor]
//
// `GET /` answers 200 with a short body; other paths 404; a malformed request gets 400 and the
// connection is closed. Connections are kept alive (HTTP/1.1 default, or HTTP/1.0 with
// `Connection: keep-alive`) and requests on one connection are answered in order. Stops cleanly
// on SIGINT or SIGTERM. It runs N loops (default: one per CPU), each on its own thread with its
// own listener on the port (SO_REUSEPORT), or with --acceptor one listener that hands
// connections to the loops in turn.
import ExampleSupport
import Glibc
import Spindle
import SpindleLoop

/// One parsed request head.
struct Request {
    var method: Substring
    var path: Substring
    var keepAlive: Bool
    var contentLength: Int
}

/// Parses a request head (request line and headers, without the blank line); nil if malformed.
func parse(_ head: Substring) -> Request? {
    let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
    let parts = lines.first?.split(separator: " ") ?? []
    guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), parts[1].hasPrefix("/") else { return nil }
    var request = Request(method: parts[0], path: parts[1], keepAlive: parts[2] == "HTTP/1.1", contentLength: 0)
    for line in lines.dropFirst() where !line.isEmpty {
        guard let colon = line.firstIndex(of: ":") else { return nil }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingPrefix(" ").lowercased()
        if name == "connection" { request.keepAlive = value == "keep-alive" }
        if name == "content-length" {
            guard let length = Int(value), length >= 0 else { return nil }
            request.contentLength = length
        }
    }
    return request
}

func response(_ status: String, _ body: String, keepAlive: Bool) -> String {
    "HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
        + "Connection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n\(body)"
}

@Sendable func serve(_ connection: TCPConnection) {
    var pending: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        // Read until a whole request head is buffered.
        guard let end = findHeadEnd(pending) else {
            if pending.count >= 64 * 1024 {
                try? connection.write(response("400 Bad Request", "request head too large\n", keepAlive: false))
                return
            }
            guard let n = try? connection.read(into: &buffer), n > 0 else { return }
            pending += buffer[..<n]
            continue
        }
        guard let request = parse(String(decoding: pending[..<end], as: UTF8.self)[...]) else {
            try? connection.write(response("400 Bad Request", "malformed request\n", keepAlive: false))
            return
        }
        pending.removeFirst(end + 4)
        // Skip the request body, if any.
        var bodyLeft = request.contentLength
        let buffered = min(bodyLeft, pending.count)
        pending.removeFirst(buffered)
        bodyLeft -= buffered
        while bodyLeft > 0 {
            guard let n = try? connection.read(into: &buffer), n > 0 else { return }
            let used = min(n, bodyLeft)
            bodyLeft -= used
            pending += buffer[used..<n]
        }
        let reply =
            request.method == "GET" && request.path == "/"
            ? response("200 OK", "Hello from Spindle fibers\n", keepAlive: request.keepAlive)
            : response("404 Not Found", "no such path: \(request.path)\n", keepAlive: request.keepAlive)
        guard (try? connection.write(reply)) != nil, request.keepAlive else { return }
    }
}

/// The index of the "\r\n\r\n" that ends a request head.
func findHeadEnd(_ bytes: [UInt8]) -> Int? {
    guard bytes.count >= 4 else { return nil }
    for i in 0...(bytes.count - 4)
    where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
        return i
    }
    return nil
}

let options = parseServiceArguments("spindle-http", defaultPort: 8080)
do {
    try runService("spindle-http", options, handle: serve)
} catch {
    complain("spindle-http", "\(error)")
    exit(1)
}
