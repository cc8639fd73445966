import Foundation

/// Renders a report for people (table, Markdown) and machines (JSON, CSV).
package enum ReportFormatter {
    package static let header = [
        "workload", "variant", "phase", "executor", "metric", "median", "min", "max", "unit",
        "ratio", "per op",
    ]

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
        let skipped = (report.skipped ?? []).map { "skipped: \($0)" }
        return machineLine(report.machine) + "\n\n" + (lines + skipped).joined(separator: "\n") + "\n"
    }

    package static func machineLine(_ m: MachineInfo) -> String {
        "machine: \(m.cpu), \(m.cores) cores, \(m.kernel); \(m.swift); libuv \(m.libuv); Boost \(m.boost)"
            + (m.valgrind.map { "; \($0)" } ?? "") + "; \(m.date)"
    }

    package static func markdown(_ report: Report) -> String {
        var text = "# spindle-bench report\n\n\(machineLine(report.machine))\n\n"
        text += headline(report) + gallery(report)
        if report.results.contains(where: { $0.workload == "fanout" }) {
            text += "![fanout, warm, relative to callbacks](chart.svg)\n\n"
        }
        if let skipped = report.skipped, !skipped.isEmpty {
            text += "Peers not run:\n\n" + skipped.map { "- \($0)\n" }.joined() + "\n"
        }
        text += "## Every row\n\n"
        text += "| " + header.joined(separator: " | ") + " |\n"
        text += "|" + header.map { _ in " --- " }.joined(separator: "|") + "|\n"
        for row in report.results { text += "| " + cells(row).joined(separator: " | ") + " |\n" }
        return text
    }

    /// The seed's experiment: fanout, warm, callbacks vs futures vs fibers vs the worst pitfall.
    static func headline(_ report: Report) -> String {
        let fanout = report.results.filter { $0.workload == "fanout" && $0.phase == "warm" && $0.ratio != nil }
        guard !fanout.isEmpty else { return "" }
        var text = "## Headline: fanout (10,000 operations × 10 steps, warm), time relative to callbacks\n\n"
        text +=
            "| step | callbacks | futures | fibers | fastest peer | worst pitfall |\n| --- | --- | --- | --- | --- | --- |\n"
        for variant in ["yield", "timer", "io"] {
            let rows = fanout.filter { $0.variant == variant }
            guard !rows.isEmpty else { continue }
            func cell(_ executor: String) -> String {
                rows.first { $0.executor == executor }.map {
                    "\(number($0.median)) ms (\(String(format: "%.2fx", $0.ratio!)))"
                } ?? "—"
            }
            let worst = rows.filter { FanoutWorkload.pitfalls.contains($0.executor) }.max { $0.median < $1.median }
            let peer = rows.filter { $0.note?.hasPrefix("peer:") ?? false }.min { $0.median < $1.median }
            let peerCell =
                peer.map { "\($0.executor): \(number($0.median)) ms (\(String(format: "%.2fx", $0.ratio!)))" } ?? "—"
            let worstCell =
                worst.map { "\($0.executor): \(number($0.median)) ms (\(String(format: "%.1fx", $0.ratio!)))" } ?? "—"
            text +=
                "| \(variant) | \(cell("callbacks")) | \(cell("futures")) | \(cell("fibers")) | \(peerCell) | \(worstCell) |\n"
        }
        return text + "\n" + prefaulted(report)
    }

    /// One line on fibers starting cold on a prefaulted pool: first run over the warm median.
    static func prefaulted(_ report: Report) -> String {
        let ratios: [String] = ["yield", "timer", "io"].compactMap { variant in
            func row(_ phase: String) -> BenchResult? {
                report.results.first {
                    $0.workload == "fanout" && $0.variant == variant && $0.executor == "fibers" && $0.phase == phase
                }
            }
            guard let first = row("prefaulted"), let warm = row("warm") else { return nil }
            let faults = [first, row("cold")].map { $0?.per_op?["faults"].map(number) ?? "?" }
            return "\(variant) \(String(format: "%.2fx", first.median / warm.median)) "
                + "(\(faults[0]) page faults per operation; \(faults[1]) on fresh stacks)"
        }
        guard !ratios.isEmpty else { return "" }
        return "Fibers on a prefaulted stack pool, first run over warm runs (target ≤ 2): "
            + ratios.joined(separator: ", ") + ".\n\n"
    }

    /// The pitfall gallery: each mistake's factor and where its time goes.
    static func gallery(_ report: Report) -> String {
        let rows = report.results.filter {
            $0.workload == "fanout" && $0.phase == "warm" && FanoutWorkload.pitfalls.contains($0.executor)
        }
        guard !rows.isEmpty else { return "" }
        var text = "## Pitfall gallery (fanout timer, warm)\n\n"
        text += "| pitfall | time | vs callbacks | vs fibers | where the time goes |\n| --- | --- | --- | --- | --- |\n"
        for row in rows {
            let fibers = report.results.first {
                $0.workload == "fanout" && $0.variant == row.variant && $0.phase == "warm" && $0.executor == "fibers"
            }
            let note = (row.note ?? "").replacingOccurrences(of: "|", with: "\\|")
            text +=
                "| \(row.executor) | \(number(row.median)) ms | \(row.ratio.map { String(format: "%.1fx", $0) } ?? "") | "
                + "\(fibers.map { String(format: "%.1fx", row.median / $0.median) } ?? "") | \(note) |\n"
        }
        return text + "\n"
    }

    package static func csv(_ report: Report) -> String {
        let quote: (String) -> String = {
            $0.contains(",") || $0.contains("\"") ? "\"\($0.replacingOccurrences(of: "\"", with: "\"\""))\"" : $0
        }
        return ([header] + report.results.map(cells)).map { $0.map(quote).joined(separator: ",") }.joined(
            separator: "\n") + "\n"
    }

    package static func json(_ report: Report) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(report), as: UTF8.self) + "\n"
    }
}
