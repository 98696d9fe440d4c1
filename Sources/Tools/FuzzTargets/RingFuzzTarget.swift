import FuzzSupport
import VMBusProtocol

/// A VMBus ring between the host's reader and writer and a guest that scribbles over it: the
/// guest writes packets (valid, or with corrupted descriptors) and, between them, overwrites the
/// control words and data the host trusts least (indices, pending_send_sz, interrupt masks). The
/// reader must only ever return a packet that lies inside what it was given, or a typed error;
/// the writer must never write outside the ring nor lose track of its space.
enum RingFuzzTarget: FuzzTarget {
    static let name = "ring"
    static let summary = "the ring reader and writer (RingReader, RingWriter) against a guest scribbling on the ring"
    static let sessionLength = 2000

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var random = FuzzRandom(seed: seed)
        let dataSize = random.pick([4096, 8192, 16384, 4096 * 15])
        var findings: [FuzzFinding] = []
        // Guest → host: the guest writes (and scribbles), the host reads.
        let incoming = FlatRingMemory(dataSize: dataSize)
        // Host → guest: the host writes, the guest consumes (and scribbles).
        let outgoing = FlatRingMemory(dataSize: dataSize)
        guard var guestWriter = try? RingWriter(memory: incoming), var hostReader = try? RingReader(memory: incoming),
              var hostWriter = try? RingWriter(memory: outgoing), var guestReader = try? RingReader(memory: outgoing) else {
            return [FuzzFinding(caseIndex: 0, message: "a fresh \(dataSize)-byte ring was refused")]
        }
        var buffer: [UInt8] = []
        var guestBuffer: [UInt8] = []
        for index in 0..<cases {
            switch random.int(0...9) {
            case 0...2:
                // The guest writes a well-formed packet.
                let payload = random.bytes(random.chance(1, in: 10) ? random.int(0...dataSize) : random.int(0...256))
                if (try? guestWriter.write(type: .inband, flags: [], transactionID: random.next(), payload: payload)) != nil {
                    _ = guestWriter.commit()
                }
            case 3:
                // The guest scribbles over a control word.
                let word = random.pick([RingControlWord.writeIndex, .readIndex, .interruptMask, .pendingSendSize,
                                        .featureBits])
                incoming.control[word.rawValue] = random.interesting(UInt32.self)
            case 4:
                // …or over the data.
                let offset = random.int(0...(dataSize - 1))
                let bytes = random.bytes(random.int(1...32))
                for (step, byte) in bytes.enumerated() { incoming.data[(offset + step) % dataSize] = byte }
            case 5:
                // …or over the host → guest ring's indices.
                let word = random.pick([RingControlWord.readIndex, .writeIndex, .pendingSendSize, .interruptMask])
                outgoing.control[word.rawValue] = random.interesting(UInt32.self)
            case 6, 7:
                // The host writes a reply.
                let payload = random.bytes(random.int(0...512))
                let room = hostWriter.availableToWrite()
                do throws(RingError) {
                    try hostWriter.write(type: .inband, flags: [], transactionID: random.next(), payload: payload)
                    _ = hostWriter.commit()
                    if hostWriter.availableToWrite() > room {
                        findings.append(FuzzFinding(caseIndex: index, message: "writing grew the writer's space"))
                    }
                } catch {}
            default:
                // The guest consumes what the host wrote; the host reads what the guest wrote.
                do throws(RingError) {
                    while let descriptor = try guestReader.next(into: &guestBuffer) {
                        if descriptor.totalLength > guestBuffer.count {
                            findings.append(FuzzFinding(caseIndex: index, message: "host packet longer than its copy"))
                        }
                    }
                    _ = guestReader.commit()
                } catch {
                    // The guest scribbled the host → guest ring into corruption: start it over.
                    for word in [RingControlWord.writeIndex, .readIndex, .interruptMask, .pendingSendSize] {
                        outgoing.control[word.rawValue] = 0
                    }
                    if let reader = try? RingReader(memory: outgoing), let writer = try? RingWriter(memory: outgoing) {
                        guestReader = reader
                        hostWriter = writer
                    }
                }
            }
            // The host drains its incoming ring after every step.
            do throws(RingError) {
                var packets = 0
                while packets < 64, let descriptor = try hostReader.next(into: &buffer) {
                    packets += 1
                    if descriptor.payloadOffset < PacketDescriptor.size || descriptor.totalLength < descriptor.payloadOffset
                        || descriptor.totalLength > buffer.count || descriptor.totalLength > dataSize {
                        findings.append(FuzzFinding(
                            caseIndex: index,
                            message: "reader returned offset \(descriptor.payloadOffset) length \(descriptor.totalLength) "
                                + "with \(buffer.count) bytes copied"))
                    }
                }
                _ = hostReader.commit()
            } catch {
                // A corrupt ring is a typed error; the channel would be closed. Start it over.
                for word in [RingControlWord.writeIndex, .readIndex, .interruptMask, .pendingSendSize] {
                    incoming.control[word.rawValue] = 0
                }
                incoming.control[RingControlWord.featureBits.rawValue] = RingLayout.featurePendingSendSize
                guard let reader = try? RingReader(memory: incoming), let writer = try? RingWriter(memory: incoming) else {
                    findings.append(FuzzFinding(caseIndex: index, message: "a reset ring was refused"))
                    return findings
                }
                hostReader = reader
                guestWriter = writer
            }
            if index % 512 == 511 { progress(index + 1) }
        }
        progress(cases)
        return findings
    }
}
