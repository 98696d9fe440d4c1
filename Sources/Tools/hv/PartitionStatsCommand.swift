import ArgumentParser
import Foundation
import ManagementAPI

extension PartitionCommand {
    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a partition's processor reserve, limit, weight or pinning while it runs.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument var name: String
        @Option(help: "Percent of its processors guaranteed under contention (0-100).") var cpuReserve: Int?
        @Option(help: "Percent of its processors it may use at most (1-100).") var cpuLimit: Int?
        @Option(help: "Relative weight against other partitions (1-10000, default 100).") var cpuWeight: Int?
        @Option(help: ArgumentHelp("Host processors its virtual processors may run on (e.g. 1 or 0-1), or none.",
                                   valueName: "cpu-list"))
        var cpuAffinity: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let affinity = try cpuAffinity.map { text throws(ValidationError) -> [Int] in
                text == "none" ? [] : try CPUListArgument.parse(text)
            }
            let change = ProcessorSettings(reserve: cpuReserve, limit: cpuLimit, weight: cpuWeight, affinity: affinity)
            guard !change.isEmpty else {
                throw ValidationError("Name at least one of --cpu-reserve, --cpu-limit, --cpu-weight and --cpu-affinity.")
            }
            do {
                let info = try await runtime.client.setProcessorControls(name, change)
                if json {
                    print(encodeJSON(info))
                } else if let cpu = info.cpu {
                    print("\(info.name): " + StatisticsText.controls(cpu))
                } else {
                    print("\(info.name): \(info.state)")
                }
            } catch {
                throw fail(error)
            }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what a partition has consumed: processor time, exits, SynIC traffic, memory and channels.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument var name: String
        @Flag(help: "Sample again every --interval seconds, with rates since the last sample, until interrupted.")
        var watch = false
        @Option(help: "Seconds between samples with --watch.") var interval = 1.0
        @Flag(help: "Print JSON (one object per sample).") var json = false

        func run() async throws {
            guard interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1 s.") }
            do {
                var previous: PartitionStatistics?
                repeat {
                    let sample = try await runtime.client.statistics(name)
                    // Written straight to the descriptor, so a pipe sees each sample as it comes.
                    let text = json ? (watch ? encodeJSONLine(sample) : encodeJSON(sample))
                        : (previous == nil ? "" : "\n") + StatisticsText.render(sample, since: previous)
                    FileHandle.standardOutput.write(Data((text + "\n").utf8))
                    previous = sample
                    if watch { try await Task.sleep(for: .seconds(interval)) }
                } while watch
            } catch {
                throw fail(error)
            }
        }
    }
}

func encodeJSONLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}

/// `hv partition stats` as text.
enum StatisticsText {
    static func controls(_ cpu: ProcessorControlsInfo) -> String {
        var text = "reserve \(cpu.reserve) %, limit \(cpu.limit) %, weight \(cpu.weight)"
        if let affinity = cpu.affinity { text += ", on host processors \(affinity.map(String.init).joined(separator: ","))" }
        return text + (cpu.enforced ? "" : " (not enforced)")
    }

    static func render(_ sample: PartitionStatistics, since previous: PartitionStatistics?) -> String {
        var lines: [String] = []
        let uptime = Double(sample.sampledAtNanoseconds &- sample.createdAtNanoseconds) / 1e9
        lines.append("\(sample.name) (id \(sample.id)): \(sample.state), up \(String(format: "%.1f", uptime)) s")
        var cpuLine = "cpu: " + String(format: "%.3f s", Double(sample.cpu.totalNanoseconds) / 1e9)
            + " (\(sample.cpu.source))"
        if let previous, sample.sampledAtNanoseconds > previous.sampledAtNanoseconds {
            let used = Double(sample.cpu.totalNanoseconds &- previous.cpu.totalNanoseconds)
            let elapsed = Double(sample.sampledAtNanoseconds - previous.sampledAtNanoseconds)
            cpuLine += String(format: ", %.1f %% of one host processor since the last sample", used / elapsed * 100)
        }
        lines.append(cpuLine + "; " + controls(sample.cpu.controls))
        for group in sample.cpu.controlGroups { lines.append("  group \(group)") }
        let vpRows = sample.cpu.processors.map { vp in
            ["\(vp.vp)", vp.threadID.map(String.init) ?? "-", String(format: "%.3f", Double(vp.cpuNanoseconds) / 1e9),
             exits(vp.exits)]
        }
        lines.append(Table(headers: ["  VP", "THREAD", "CPU S", "EXITS"], rows: vpRows.map { ["  " + $0[0]] + $0.dropFirst() })
            .rendered)
        lines.append("exits: " + exits(sample.exits))
        let synic = sample.synic
        lines.append("synic: \(synic.messagesPosted) messages posted, \(synic.messagesDelivered) delivered; "
            + "\(synic.eventsSignalled) events through the root; \(synic.hypercalls) slow hypercalls")
        lines.append(String(format: "memory: %.1f MiB assigned, %.1f MiB touched", Double(sample.memory.assignedBytes) / 1048576,
                            Double(sample.memory.touchedBytes) / 1048576))
        if let reason = sample.channelsUnavailable {
            lines.append("channels: unknown (\(reason))")
        } else if sample.channels.isEmpty {
            lines.append("channels: none open")
        } else {
            let rows = sample.channels.map { channel in
                ["  \(channel.relID)" + (channel.subChannel > 0 ? ".\(channel.subChannel)" : ""), channel.device,
                 channel.open ? "yes" : "no",
                 "\(channel.guestToHost.packets)", "\(channel.guestToHost.bytes)", "\(channel.guestToHost.signals)",
                 "\(channel.hostToGuest.packets)", "\(channel.hostToGuest.bytes)", "\(channel.hostToGuest.signals)"]
            }
            lines.append("channels (guest→host | host→guest):")
            lines.append(Table(headers: ["  RELID", "DEVICE", "OPEN", "PACKETS", "BYTES", "SIGNALS", "PACKETS", "BYTES",
                                         "SIGNALS"], rows: rows).rendered)
        }
        return lines.joined(separator: "\n")
    }

    static func exits(_ counts: [String: UInt64]) -> String {
        counts.isEmpty ? "-" : counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}
