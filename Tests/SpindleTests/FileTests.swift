import Glibc
import Spindle
import SpindleLoop
import Testing

@Suite("Files on fibers")
struct FileTests {
    @Test("write, sync, stat and read back a file while other fibers keep running")
    func roundTrip() throws {
        let path = "/tmp/spindle-file-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        let (content, size, ticks) = try withLoop { loop -> (String, UInt64, Int) in
            var ticks = 0
            loop.spawn(name: "ticker") {
                for _ in 0..<5 {
                    ticks += 1
                    Fiber.yield()
                }
            }
            let worker = loop.spawn(name: "file") { () -> (String, UInt64) in
                let file = try FiberFile.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
                try file.write(Array("hello, ".utf8))
                try file.write(Array("fibers".utf8))
                try file.sync()
                try file.close()
                let status = try FiberFile.status(of: path)
                #expect(status.isRegularFile)
                let reader = try FiberFile.open(path)
                var buffer = [UInt8](repeating: 0, count: 64)
                let n = try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }
                var tailBuffer = [UInt8](repeating: 0, count: 64)
                let tail = try tailBuffer.withUnsafeMutableBytes { try reader.read(into: $0, at: 7) }
                try reader.close()
                #expect(String(decoding: tailBuffer[..<tail], as: UTF8.self) == "fibers")
                return (String(decoding: buffer[..<n], as: UTF8.self), status.size)
            }
            try loop.run()
            let (content, size) = try worker.join()
            return (content, size, ticks)
        }
        #expect(content == "hello, fibers")
        #expect(size == 13)
        #expect(ticks == 5)
    }

    @Test("opening a missing file throws ENOENT with the path")
    func missing() throws {
        let description = try withLoop { loop -> String in
            let attempt = loop.spawn { () -> String in
                do {
                    _ = try FiberFile.open("/nonexistent/spindle")
                    return "opened"
                } catch let error as UVError {
                    return error.description
                }
            }
            try loop.run()
            return try attempt.join()
        }
        #expect(description == "uv_fs_open /nonexistent/spindle: ENOENT: no such file or directory")
    }
}
