import ControlProtocol
import DeviceModel
import DeviceRegistry
import Foundation
import FuzzSupport
import LinuxSupport
import ManagementAPI
import RootScheduler
import VMBusProtocol

/// The management API's JSON as the root takes it: request bodies for partitions, devices,
/// device settings and actions — valid ones with random fields, the same mutated byte by byte,
/// and generated JSON of every shape (deep nesting, huge numbers, long strings, odd Unicode),
/// some of it in UTF-16 or UTF-32 (which Foundation's decoder also reads) —
/// decoded and checked as the root checks them (`RootScheduler.validate`, the device catalog).
/// Promises: nothing traps, and a configuration the root accepts can be handed to the parent in
/// one control message that decodes back to the same partition.
enum ManagementAPIFuzzTarget: FuzzTarget {
    static let name = "management-api"
    static let summary = "the management API's request bodies (partitions, devices, settings, actions) as the root checks them"
    static let sessionLength = 2000

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var random = FuzzRandom(seed: seed)
        let catalog = DeviceRegistry.catalog
        var findings: [FuzzFinding] = []
        var corpus: [[UInt8]] = []
        for index in 0..<cases {
            let body: [UInt8]
            switch random.int(0...9) {
            case 0...4: body = Array(configurationJSON(&random, catalog: catalog).utf8)
            case 5: body = Array(deviceJSON(&random, catalog: catalog).utf8)
            case 6: body = Array(jsonValue(&random, depth: 0).utf8)
            case 7:
                // Deep nesting, unterminated or not (Foundation's decoder traps on 513 unterminated `[`).
                let opening = random.pick(["[", "{\"a\":"])
                let depth = random.chance(1, in: 4) ? random.int(500...530) : random.int(1...20_000)
                body = Array((String(repeating: opening, count: depth)
                    + (random.chance(1, in: 2) ? String(repeating: opening == "[" ? "]" : "}", count: depth) : "")).utf8)
            case 8 where random.chance(1, in: 2):
                // Another encoding of a body, with or without its mark: a nesting check that read
                // it as UTF-8 would miss brackets (a character holding a quote byte hides them).
                let text = random.chance(1, in: 2) ? "[\"\u{2241}\"," + String(repeating: "[", count: random.int(500...530))
                    : jsonValue(&random, depth: 0)
                body = encoded(text, &random)
            default:
                body = corpus.isEmpty ? random.bytes(64) : Mutator.mutated(random.pick(corpus), random: &random, corpus: corpus)
            }
            if corpus.count < 128 { corpus.append(body) } else { corpus[random.int(0...127)] = body }
            // The root's own decoding of a request body (`APIBody`), as each route uses it.
            if let configuration = try? APIBody.decode(PartitionConfiguration.self, from: body) {
                if let problem = check(configuration, catalog: catalog) {
                    findings.append(FuzzFinding(caseIndex: index, message: problem))
                }
            }
            if let device = try? APIBody.decode(DeviceConfiguration.self, from: body) {
                let existing = (try? catalog.resolve([DeviceConfiguration(kind: "heartbeat")], partition: "fuzz")) ?? []
                _ = try? catalog.resolve(adding: device, to: existing, partition: "fuzz")
            }
            if let settings = try? APIBody.decode([String: JSONValue].self, from: body),
               let spec = try? catalog.resolve([DeviceConfiguration(kind: random.pick(catalog.kinds))], partition: "fuzz").first {
                _ = try? catalog.resolve(changing: spec, to: settings, among: [spec])
            }
            _ = try? APIBody.decode(PartitionAction.self, from: body)
            _ = try? APIBody.decode(SwitchConfiguration.self, from: body)
            _ = try? APIBody.decode(ProcessorSettings.self, from: body)
            if index % 256 == 255 { progress(index + 1) }
        }
        progress(cases)
        return findings
    }

    /// `text` in UTF-16 or UTF-32, either byte order, with or without a byte-order mark.
    static func encoded(_ text: String, _ random: inout FuzzRandom) -> [UInt8] {
        let bigEndian = random.chance(1, in: 2)
        let units: [UInt32] = random.chance(1, in: 2) ? text.utf16.map { UInt32($0) } : text.unicodeScalars.map(\.value)
        let width = units.allSatisfy { $0 <= 0xFFFF } && random.chance(1, in: 2) ? 2 : 4
        var bytes: [UInt8] = []
        for unit in (random.chance(1, in: 2) ? [0xFEFF] : []) + units {
            let little = (0..<width).map { UInt8(truncatingIfNeeded: unit >> (8 * $0)) }
            bytes += bigEndian ? little.reversed() : little
        }
        return bytes
    }

    /// What the root promises of a configuration it accepts.
    static func check(_ configuration: PartitionConfiguration, catalog: DeviceCatalog) -> String? {
        guard let devices = try? RootScheduler.validate(configuration, catalog: catalog) else { return nil }
        let pages = (0..<UInt32(configuration.processors)).map {
            ProcessorPages(vp: $0, synicEnabled: true, messagePage: .max, eventFlagsPage: .max)
        }
        let attachment = PartitionAttachment(
            partitionID: 1, name: configuration.name, memorySize: UInt64(configuration.memoryMiB) << 20,
            processorCount: UInt32(configuration.processors),
            clock: ReferenceClock(tscFrequencyHz: 1, scale: 1, guestTSCOffset: 1, referenceOffset: 1), processors: pages,
            devices: devices)
        let message = RootMessage.partitionAttached(attachment)
        let bytes = message.bytes
        guard bytes.count <= SequencedPacketSocket.maximumMessageSize else {
            return "an accepted configuration needs a \(bytes.count)-byte control message"
        }
        guard let decoded = try? RootMessage(parsing: bytes), decoded == message else {
            return "an accepted configuration does not survive the control protocol"
        }
        return nil
    }

    static func configurationJSON(_ random: inout FuzzRandom, catalog: DeviceCatalog) -> String {
        let name = random.chance(4, in: 5) ? "p\(random.int(0...999))" : text(&random, 40)
        let guest: String
        if random.chance(1, in: 2) {
            guest = "{\"embedded\": {\"image\": \"\(text(&random, 20))\", \"arguments\": \"\(text(&random, 300))\", "
                + "\"imagePath\": \"/nonexistent/\(text(&random, 10))\"}}"
        } else {
            guest = "{\"linux\": {\"kernel\": \"/nonexistent/k\", \"commandLine\": \"\(text(&random, 300))\"}}"
        }
        let devices = (0..<(random.chance(1, in: 10) ? random.int(0...80) : random.int(0...5))).map { _ in
            deviceJSON(&random, catalog: catalog)
        }.joined(separator: ", ")
        let processors = random.chance(9, in: 10) ? random.int(1...64) : Int(truncatingIfNeeded: random.next())
        let memory = random.chance(9, in: 10) ? 16 + 2 * random.int(0...100) : Int(truncatingIfNeeded: random.next())
        return "{\"name\": \"\(name)\", \"processors\": \(processors), \"memoryMiB\": \(memory), \"guest\": \(guest), "
            + "\"devices\": [\(devices)]}"
    }

    static func deviceJSON(_ random: inout FuzzRandom, catalog: DeviceCatalog) -> String {
        let kind = random.chance(9, in: 10) ? random.pick(catalog.kinds) : text(&random, 12)
        if random.chance(1, in: 2) { return "\"\(kind)\"" }
        var fields = ["\"kind\": \"\(kind)\""]
        if random.chance(1, in: 3) {
            let instance = random.chance(3, in: 4) ? (GUID(wireBytes: random.bytes(16)) ?? GUID(0, 0, 0, 0)).description
                                                   : text(&random, 40)
            fields.append("\"instance\": \"\(instance)\"")
        }
        for _ in 0..<random.int(0...3) { fields.append("\"\(text(&random, 12))\": \(jsonValue(&random, depth: 2))") }
        return "{" + fields.joined(separator: ", ") + "}"
    }

    /// Any JSON value, nested up to a few levels below `depth`.
    static func jsonValue(_ random: inout FuzzRandom, depth: Int) -> String {
        switch depth > 4 ? random.int(0...3) : random.int(0...5) {
        case 0: return "null"
        case 1: return random.chance(1, in: 2) ? "true" : "false"
        case 2:
            return random.pick(["0", "-1", "1e308", "-1e400", "1.5", "18446744073709551616", "\(random.next())", "1e-400"])
        case 3: return "\"\(text(&random, random.chance(1, in: 20) ? 20_000 : 30))\""
        case 4: return "[" + (0..<random.int(0...4)).map { _ in jsonValue(&random, depth: depth + 1) }.joined(separator: ",") + "]"
        default:
            return "{" + (0..<random.int(0...4)).map { _ in "\"\(text(&random, 8))\": \(jsonValue(&random, depth: depth + 1))" }
                .joined(separator: ",") + "}"
        }
    }

    /// A JSON string body: letters mostly, escapes and non-ASCII sometimes.
    static func text(_ random: inout FuzzRandom, _ limit: Int) -> String {
        let pieces = ["a", "b", "z", "-", "0", "9", "\\\"", "\\\\", "\\u0000", "\\ud800", "é", "😀", "/", " ", "\\n"]
        return (0..<random.int(0...max(0, limit))).map { _ in random.pick(pieces) }.joined()
    }
}
