// Lists the public symbols of Spindle's modules that have no documentation comment.
//
// Usage: swift Tools/docs/coverage.swift SYMBOL_GRAPH_DIR MODULE...
//
// Reads each module's symbol graphs (`swift package dump-symbol-graph --minimum-access-level
// public`) and reports every public or open symbol declared in the package's own sources
// without a `///` comment, as file:line. Symbols the compiler synthesises (a protocol's default
// implementations, `!=` from `==`) are not the package's to document, nor are extension blocks;
// a member that implements a documented protocol requirement inherits that documentation.
// Exit status 1 when any is missing.
import Foundation

let arguments = CommandLine.arguments.dropFirst()
guard let graphDirectory = arguments.first, arguments.count > 1 else {
    FileHandle.standardError.write("usage: coverage.swift SYMBOL_GRAPH_DIR MODULE...\n".data(using: .utf8)!)
    exit(2)
}
let modules = Array(arguments.dropFirst())
var missing = Set<String>()
var total = 0
let files = try FileManager.default.contentsOfDirectory(atPath: graphDirectory).sorted()
for module in modules {
    for file in files where file == "\(module).symbols.json" || file.hasPrefix("\(module)@") {
        let data = try Data(contentsOf: URL(fileURLWithPath: graphDirectory).appendingPathComponent(file))
        let graph = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for case let symbol as [String: Any] in graph["symbols"] as! [Any] {
            let identifier = (symbol["identifier"] as! [String: Any])["precise"] as! String
            let kind = (symbol["kind"] as! [String: Any])
            guard !identifier.contains("::SYNTHESIZED::"), let location = symbol["location"] as? [String: Any],
                ["public", "open"].contains(symbol["accessLevel"] as? String),
                kind["identifier"] as? String != "swift.extension"
            else { continue }
            total += 1
            if symbol["docComment"] == nil {
                let uri = location["uri"] as! String
                let path = uri.range(of: "/Sources/").map { String(uri[uri.index(after: $0.lowerBound)...]) } ?? uri
                let line = ((location["position"] as! [String: Any])["line"] as! Int) + 1
                let name = (symbol["pathComponents"] as! [String]).joined(separator: ".")
                missing.insert("\(path):\(line): \(name) (\(kind["displayName"] as! String))")
            }
        }
    }
}
for entry in missing.sorted() { print("undocumented: \(entry)") }
FileHandle.standardError.write(
    "docs: \(total - missing.count) of \(total) public symbols documented\n".data(using: .utf8)!)
exit(missing.isEmpty ? 0 : 1)
