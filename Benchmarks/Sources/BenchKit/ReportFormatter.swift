import Foundation

/// Renders a report for people (table, Markdown) and machines (JSON, CSV).
package enum ReportFormatter {
    package static let header = ["workload", "variant", "phase", "executor", "metric", "median", "min", "max", "unit",
        "ratio", "per op"]

    package static func cells(_ row: BenchResult) -> [String] {
        [
            row.workload, row.variant, row.phase ?? "", row.executor, row.metric,
            number(row.median), number(row.min), number(row.max), row.unit,
            row.ratio.map { String(format: "%.2fx", $0) } ?? "",
            (row.per_op ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\(number($0.value))" }
                .joined(separator: " "),
        ]
    }

    package static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e9 { return String(Int64(value)) }
        if abs(value) >= 100 { return String(format: "%.0f", value) }
        if abs(value) >= 1 { return String(format: "%.2f", value) }
        return String(format: "%.3g", value)
    }

    package static func table(_ report: Report) -> String {
        let rows = [header] + report.results.map(cells)
        var widths = Array(repeating: 0, count: header.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var lines = rows.map { row in
            row.enumerated().map { i, cell in cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        lines.insert(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "), at: 1)
        return machineLine(report.machine) + "\n\n" + lines.joined(separator: "\n") + "\n"
    }

    package static func machineLine(_ m: MachineInfo) -> String {
        "machine: \(m.cpu), \(m.cores) cores, \(m.kernel); \(m.swift); libuv \(m.libuv); Boost \(m.boost)"
            + (m.valgrind.map { "; \($0)" } ?? "") + "; \(m.date)"
    }

    package static func markdown(_ report: Report) -> String {
        var text = "# spindle-bench report\n\n\(machineLine(report.machine))\n\n"
        text += "| " + header.joined(separator: " | ") + " |\n"
        text += "|" + header.map { _ in " --- " }.joined(separator: "|") + "|\n"
        for row in report.results { text += "| " + cells(row).joined(separator: " | ") + " |\n" }
        return text
    }

    package static func csv(_ report: Report) -> String {
        let quote: (String) -> String = { $0.contains(",") || $0.contains("\"") ? "\"\($0.replacingOccurrences(of: "\"", with: "\"\""))\"" : $0 }
        return ([header] + report.results.map(cells)).map { $0.map(quote).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }

    package static func json(_ report: Report) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(report), as: UTF8.self) + "\n"
    }
}
