import Foundation

/// The CPU time a load cost, read from /proc (Linux): each service's process (its pid from
/// `RUN_DIR/pids`), the PostgreSQL server's processes and the whole machine. A figure then comes
/// with its cost per item, and a slow phase of a shared machine shows as more CPU for the same
/// work instead of passing for a slower system.
struct CPUUse {
    struct Sample {
        /// Seconds of CPU each service's process has used.
        var services: [String: Double]
        var postgres: Double
        /// Seconds of CPU the machine has spent busy, and lost to other guests (steal), in all.
        var busy: Double
        var steal: Double
        var at: ContinuousClock.Instant
    }

    static let services = ["contacts", "routing", "automation", "accountability", "smartplans", "notifications"]
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// Nil where /proc cannot be read (not Linux): the figures are then printed without it.
    static func sample(runDir: String) -> Sample? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        // user nice system idle iowait irq softirq steal
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count >= 8 else { return nil }
        var services: [String: Double] = [:]
        for service in Self.services {
            guard let pid = try? String(contentsOfFile: "\(runDir)/pids/\(service)", encoding: .utf8) else { continue }
            services[service] = processSeconds(pid.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { $0.allSatisfy(\.isNumber) } ?? []
        let postgresPids = Set(pids.filter { (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) == "postgres\n" })
        // The live processes, and for each server (a postgres whose parent is not one) the time of
        // its children that have ended: a connection closed or an autovacuum worker done during
        // the run otherwise took its CPU with it, and the part it had used before the run made
        // PostgreSQL look cheaper than it was.
        let postgres = postgresPids.compactMap { pid -> Double? in
            guard let fields = statFields(pid), let own = seconds(fields, from: 11) else { return nil }
            guard fields.count > 1, !postgresPids.contains(String(fields[1])) else { return own }
            return own + (seconds(fields, from: 13) ?? 0)
        }.reduce(0, +)
        return Sample(services: services, postgres: postgres, busy: (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / ticksPerSecond,
                      steal: fields[7] / ticksPerSecond, at: .now)
    }

    /// User and system time of one process; its name may hold spaces, so the fields are counted
    /// from the parenthesis that closes it.
    static func processSeconds(_ pid: String) -> Double? {
        statFields(pid).flatMap { seconds($0, from: 11) }
    }

    /// The fields of /proc/PID/stat after the name (which may hold spaces): the state is field 0,
    /// the parent 1, utime and stime 11 and 12, the ended children's cutime and cstime 13 and 14.
    static func statFields(_ pid: String) -> [Substring]? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    /// Seconds of user and system time in the two fields from `index`.
    static func seconds(_ fields: [Substring], from index: Int) -> Double? {
        guard fields.count > index + 1, let user = Double(fields[index]), let system = Double(fields[index + 1]) else { return nil }
        return (user + system) / ticksPerSecond
    }

    /// What bounds a rate on this machine: its cores at the machine's CPU per item give the most
    /// items a second it could do, and the parts' shares say where that CPU goes, largest first.
    static func bound(from start: Sample?, to end: Sample?, items: Int, unit: String) -> String? {
        guard let start, let end, items > 0 else { return nil }
        let machine = (end.busy - start.busy) * 1000 / Double(items)
        guard machine > 0 else { return nil }
        var parts = Self.services.compactMap { service -> (String, Double)? in
            guard let before = start.services[service], let after = end.services[service] else { return nil }
            return (service, (after - before) * 1000 / Double(items))
        }
        parts.append(("PostgreSQL", (end.postgres - start.postgres) * 1000 / Double(items)))
        parts.append(("the rest (bench, kernel, other processes)", machine - parts.map(\.1).reduce(0, +)))
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        return "  bound: the machine's CPU, \(String(format: "%.2f", machine)) ms a \(unit) on \(Int(cores)) cores = at most "
            + "\(String(format: "%.0f", cores * 1000 / machine)) \(unit)s/s; where it goes: "
            + parts.sorted { $0.1 > $1.1 }.map { "\($0.0) \(String(format: "%.0f", $0.1 / machine * 100))%" }.joined(separator: ", ")
    }

    /// One line: CPU per item by process and for the machine, with how busy it was.
    static func line(from start: Sample?, to end: Sample?, items: Int, unit: String) -> String? {
        guard let start, let end, items > 0 else { return nil }
        func perItem(_ seconds: Double) -> String { String(format: "%.2f", seconds * 1000 / Double(items)) }
        let processes = Self.services.compactMap { service -> String? in
            guard let before = start.services[service], let after = end.services[service] else { return nil }
            return "\(service) \(perItem(after - before))"
        }
        let elapsed = Double((end.at - start.at).components.seconds) + Double((end.at - start.at).components.attoseconds) / 1e18
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        let busy = elapsed > 0 ? (end.busy - start.busy) / (elapsed * cores) * 100 : 0
        let steal = elapsed > 0 ? (end.steal - start.steal) / (elapsed * cores) * 100 : 0
        return "  CPU per \(unit), ms: " + (processes + ["PostgreSQL \(perItem(end.postgres - start.postgres))"]).joined(separator: ", ")
            + "; machine \(perItem(end.busy - start.busy)) (busy \(String(format: "%.0f", busy))% of \(Int(cores)) cores, steal \(String(format: "%.0f", steal))%)"
    }
}
