import GuestMemory
import HyperV

/// The registers a hypercall passes (x64 calling convention, Docs/hyperv-interface.md §3.1).
public struct HypercallRegisters: Hashable, Sendable {
    /// RCX: the control word.
    public var control: UInt64
    /// RDX: the input GPA, or the first fast input.
    public var input: UInt64
    /// R8: the output GPA, or the second fast input.
    public var output: UInt64

    public init(control: UInt64, input: UInt64, output: UInt64) {
        self.control = control
        self.input = input
        self.output = output
    }
}

extension HvPartition {
    /// Executes a hypercall made through the hypercall page's slow path by processor `vp`.
    /// - Returns: the value for RAX (status in bits 15:0; reps completed in 43:32 is 0).
    public func hypercall(vp: Int, _ registers: HypercallRegisters) -> UInt64 {
        counters.hypercalls.wrappingAdd(1, ordering: .relaxed)
        return UInt64(dispatch(vp: vp, registers).rawValue)
    }

    /// Handles an HvSignalEvent fast-path OUT that no ioeventfd matched (hypercall page offset
    /// 0x0F): the page XORs RAX with the connection ID after the OUT.
    /// - Returns: the value for RAX.
    public func signalEventFastPathExit(connectionID: UInt32) -> UInt64 {
        let status = signalEvent(ConnectionID(connectionID), flag: 0)
        return UInt64(UInt32(status.rawValue) ^ connectionID)
    }

    private func dispatch(vp: Int, _ registers: HypercallRegisters) -> HypercallStatus {
        let control = HypercallControl(rawValue: registers.control)
        switch control.code {
        case .postMessage:
            guard isSimpleCall(control), !control.isFast else { return .invalidHypercallInput }
            return postMessage(vp: vp, inputAddress: registers.input)
        case .signalEvent:
            guard isSimpleCall(control) else { return .invalidHypercallInput }
            let input: UInt64
            if control.isFast {
                input = registers.input
            } else {
                switch readInput(at: registers.input, length: 8) {
                case .failure(let status): return status
                case .success(let bytes): input = bytes.littleEndian(UInt64.self, at: 0) ?? 0
                }
            }
            let connection = ConnectionID(UInt32(truncatingIfNeeded: input))
            let flag = UInt16(truncatingIfNeeded: input >> 32)
            guard input >> 48 == 0 else { return .invalidHypercallInput }
            return signalEvent(connection, flag: flag)
        default:
            return .invalidHypercallCode
        }
    }

    /// A simple (non-rep) call has no rep count, no variable header and no reserved bits.
    private func isSimpleCall(_ control: HypercallControl) -> Bool {
        control.repCount == 0 && control.repStart == 0 && control.variableHeaderSize == 0 && control.reservedBits == 0
    }

    /// Reads hypercall input: 8-byte aligned, within one page, inside guest RAM.
    private func readInput(at address: UInt64, length: Int) -> Result<[UInt8], HypercallStatus> {
        guard address % 8 == 0 else { return .failure(.invalidAlignment) }
        guard address % GuestPhysicalAddress.pageSize + UInt64(length) <= GuestPhysicalAddress.pageSize else {
            return .failure(.invalidHypercallInput)
        }
        guard let bytes = try? guestMemory.read(at: GuestPhysicalAddress(address), count: length) else {
            return .failure(.invalidHypercallInput)
        }
        return .success(bytes)
    }

    /// HvPostMessage: validate the input block, then hand the payload to the connection's receiver.
    private func postMessage(vp: Int, inputAddress: UInt64) -> HypercallStatus {
        let block: [UInt8]
        switch readInput(at: inputAddress, length: PostMessageInput.size) {
        case .failure(let status): return status
        case .success(let bytes): block = bytes
        }
        // The block was copied once; everything below reads the copy.
        let connection = block.littleEndian(UInt32.self, at: PostMessageInput.connectionIDOffset) ?? 0
        let type = SynICMessageType(rawValue: block.littleEndian(UInt32.self, at: PostMessageInput.messageTypeOffset) ?? 0)
        let size = Int(block.littleEndian(UInt32.self, at: PostMessageInput.payloadSizeOffset) ?? UInt32.max)
        guard size <= SynIC.maximumMessagePayload, type != .none, !type.isHypervisorReserved else {
            return .invalidParameter
        }
        guard let receiver = connections.messageReceiver(for: ConnectionID(connection & ConnectionID.mask)) else {
            return .invalidConnectionID
        }
        let payload = Array(block[PostMessageInput.payloadOffset..<(PostMessageInput.payloadOffset + size)])
        let status = receiver.receive(from: UInt32(vp), type: type, payload: payload)
        if status == .success { counters.messagesPosted.wrappingAdd(1, ordering: .relaxed) }
        return status
    }

    /// HvSignalEvent: signal the connection's eventfd.
    func signalEvent(_ connection: ConnectionID, flag: UInt16) -> HypercallStatus {
        guard flag < UInt16(SynIC.eventFlagsBlockSize * 8) else { return .invalidParameter }
        guard connections.signal(ConnectionID(connection.rawValue & ConnectionID.mask)) else {
            return .invalidConnectionID
        }
        counters.eventsSignalled.wrappingAdd(1, ordering: .relaxed)
        return .success
    }
}
