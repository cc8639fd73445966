import Foundation

/// The report's chart: the fanout workload's warm times as a ratio to callbacks (log scale),
/// one group of horizontal bars per step kind, one bar per executor — the seed's experiment
/// and the pitfall gallery at a glance. Plain SVG, no script, readable at its natural size.
package enum Chart {
    static let colours: [String: String] = [
        "c-fcontext": "#7f7f7f", "fibers": "#1f77b4", "callbacks": "#2ca02c", "futures": "#ff7f0e",
        "swift-async-loop": "#9467bd", "swift-async-global": "#8c564b", "threads": "#e377c2",
    ]
    static let pitfallColour = "#d62728"

    package static func svg(_ report: Report, pitfalls: Set<String>) -> String {
        let groups = ["yield", "timer", "io"].compactMap { variant -> (String, [BenchResult])? in
            let rows = report.results.filter {
                $0.workload == "fanout" && $0.variant == variant && $0.phase == "warm" && $0.metric == "time"
                    && $0.ratio != nil
            }
            return rows.isEmpty ? nil : (variant, rows)
        }
        let ratios = groups.flatMap { $0.1.compactMap(\.ratio) }
        // Log scale over whole decades that hold every ratio (and 1x).
        let low = pow(10, floor(log10(min(ratios.min() ?? 1, 1))))
        let high = pow(10, ceil(log10(max(ratios.max() ?? 1, 1) * 1.05)))
        let (labelWidth, plotWidth, barHeight, gap, groupGap) = (190.0, 560.0, 18.0, 4.0, 34.0)
        let left = labelWidth + 10, top = 70.0
        func x(_ ratio: Double) -> Double { left + plotWidth * log10(ratio / low) / log10(high / low) }
        let barCount = Double(groups.reduce(0) { $0 + $1.1.count })
        let height = top + barCount * (barHeight + gap) + Double(groups.count) * groupGap + 60
        let width = left + plotWidth + 150

        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Int(width / 2))" y="24" text-anchor="middle" font-size="16" font-weight="bold">fanout: 10,000 operations × 10 steps, warm — time relative to callbacks</text>
            <text x="\(Int(width / 2))" y="44" text-anchor="middle" fill="#555">log scale; shorter is faster; red bars: the pitfall gallery; teal: other runtimes (peers)</text>

            """
        // Decade grid lines with their labels, and a stronger line at 1x (callbacks).
        var decade = low
        let gridBottom = height - 40
        while decade <= high * 1.0001 {
            let gx = x(decade)
            let label = decade >= 1 ? "\(Int(decade))x" : String(format: "%gx", decade)
            out +=
                "<line x1=\"\(f(gx))\" y1=\"\(Int(top - 8))\" x2=\"\(f(gx))\" y2=\"\(f(gridBottom))\" stroke=\"\(decade == 1 ? "#333" : "#ddd")\" stroke-width=\"\(decade == 1 ? 1.5 : 1)\"/>\n"
            out +=
                "<text x=\"\(f(gx))\" y=\"\(f(gridBottom + 16))\" text-anchor=\"middle\" fill=\"#333\">\(label)</text>\n"
            decade *= 10
        }
        var y = top
        for (variant, rows) in groups {
            out += "<text x=\"10\" y=\"\(f(y + 4))\" font-weight=\"bold\" font-size=\"13\">\(variant) step</text>\n"
            y += 12
            for row in rows {
                let ratio = row.ratio!
                let colour = pitfalls.contains(row.executor) ? pitfallColour : colours[row.executor] ?? "#17becf"
                let start = x(min(ratio, 1)), end = x(max(ratio, 1))
                out +=
                    "<text x=\"\(f(labelWidth))\" y=\"\(f(y + barHeight - 5))\" text-anchor=\"end\">\(row.executor)</text>\n"
                // Bars grow from the 1x line: left for faster than callbacks, right for slower.
                out +=
                    "<rect x=\"\(f(start))\" y=\"\(f(y))\" width=\"\(f(max(end - start, 1.5)))\" height=\"\(f(barHeight))\" fill=\"\(colour)\"/>\n"
                let value = ratio >= 10 ? String(format: "%.0fx", ratio) : String(format: "%.2fx", ratio)
                let detail = "\(value)  (\(ReportFormatter.number(row.median)) ms)"
                out += "<text x=\"\(f(end + 6))\" y=\"\(f(y + barHeight - 5))\" fill=\"#222\">\(detail)</text>\n"
                y += barHeight + gap
            }
            y += groupGap - 12
        }
        out +=
            "<text x=\"10\" y=\"\(f(height - 8))\" fill=\"#777\" font-size=\"10\">\(escape(ReportFormatter.machineLine(report.machine)))</text>\n"
        out += "</svg>\n"
        return out
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
