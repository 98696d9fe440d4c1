import DeviceHost
import LinuxSupport
import Logging
import Synchronization

/// An `IDEChannel` wired to its partition: the root forwards the guest's accesses to the
/// channel's ports here (string I/O as whole runs), and the channel's interrupt becomes edges on
/// its ISA IRQ through an irqfd on an IOAPIC route.
///
/// Accesses arrive on the partition's control thread, and a guest processor waits on every read
/// (the root gives up after its read deadline). So the accesses that can reach storage and be
/// slow — a Command register write (a read's first block, FLUSH CACHE), a data write that
/// completes a data-out block — run on the controller's own thread, and while one runs the
/// channel is busy as a real device is: Status and Alternate Status read BSY (and, while BSY,
/// every command block register reads as Status, ATA-3 "BSY"), the data register floats, and
/// writes wait their turn behind the command, in order. Data reads stay on the control thread
/// and return data at once; a read that takes the last word of a block that another follows
/// leaves that block's read to the controller's thread, and the channel is busy until it is
/// in (ATA: BSY between the DRQ blocks of a PIO data-in command).
final class IDEController<Storage: IDEStorage & Sendable>: EmulatedDevice where Storage.Failure: Sendable {
    /// The pace the channel asks the root for: 4 KiB through the 16-bit data register is 2,048
    /// accesses, so this lets a guest move a few MiB/s by PIO, as a real PIO disk does.
    static var accessesPerSecond: UInt32 { 1_000_000 }

    let context: any DeviceContext
    let location: IDEChannelLocation
    private let state: Mutex<State>
    private let worker: WorkQueue
    private let irq = Mutex<EventFD?>(nil)

    struct State: Sendable {
        /// The channel; `nil` only while the controller's thread runs an access on it.
        var channel: IDEChannel<Storage>?
        /// Whether the controller's thread owns the channel (accesses then find it busy).
        var busy = false
        /// Writes waiting for the controller's thread, in arrival order.
        var deferred: [Write] = []
        var edges: UInt64 = 0
        var storageFailures = 0
        var droppedWrites = 0
    }

    enum Write: Sendable {
        case single(port: UInt16, size: Int, value: UInt32)
        case string(port: UInt16, size: Int, bytes: [UInt8])
    }

    /// Writes that may wait behind a running command. Port writes are posted (the processor
    /// does not wait for them), so a guest can issue more while a command runs: those are
    /// dropped, as a drive ignores register writes while BSY, and counted.
    static var deferredLimit: Int { 4096 }

    init(channel: IDEChannel<Storage>, context: any DeviceContext) throws(SystemError) {
        self.context = context
        location = channel.location
        var channel = channel
        channel.loadsBlocksLater = true
        state = Mutex(State(channel: channel, edges: channel.interruptRisingEdges))
        worker = try WorkQueue(name: "ide-\(context.partitionName.prefix(10))", capacity: 4)
    }

    var ports: [Range<UInt16>] {
        [location.commandBlockPorts, location.controlPort..<(location.controlPort + 1)]
    }

    func attach() {
        context.requestInterruptLine(pin: UInt8(location.isaIRQ)) { [self] event in
            irq.withLock { $0 = event }
        }
        // A sector is 256 data-register accesses (KVM hands over REP OUTSW one element per
        // exit), so the channel asks for a disk's pace rather than a UART's.
        for range in ports { context.interceptPorts(range, accessesPerSecond: Self.accessesPerSecond) }
    }

    /// How long `stop` waits for the commands and writes already queued (a disk on a file
    /// server that stopped answering can keep one for ever), as a SCSI channel's close waits for
    /// its requests.
    static var stopNanoseconds: UInt64 { 30_000_000_000 }

    func stop() {
        // Past the deadline the controller's thread is left to end on its own: it touches only
        // the controller and its disk, which it keeps, never guest memory (the data moves
        // through the ports).
        if !worker.stop(withinNanoseconds: Self.stopNanoseconds) {
            context.logger.warning("partition \(context.partitionName): IDE disk still busy \(Self.stopNanoseconds / 1_000_000_000) s after the stop; left to finish on its own")
        }
    }

    // MARK: Reads: answered at once

    func portRead(port: UInt16, size: Int) -> UInt32 {
        read(orWhileBusy: Self.busyValue(port, size, location)) { $0.read(port: port, size: size) }
    }

    func portReadString(port: UInt16, size: Int, count: Int) -> [UInt8] {
        read(orWhileBusy: [UInt8](repeating: 0xFF, count: max(0, size * count))) {
            $0.readString(port: port, size: size, count: count)
        }
    }

    /// Runs a read on the channel, or answers `busyValue` while the controller's thread owns it.
    /// A read that leaves the channel awaiting its next data-in block hands the block's read to
    /// the controller's thread (the channel is busy from then on).
    private func read<Value: Sendable>(orWhileBusy busyValue: @autoclosure () -> Value, _ body: (inout IDEChannel<Storage>) -> Value) -> Value {
        let (value, edge, handOff) = state.withLock { state -> (Value, Bool, Bool) in
            guard !state.busy, var channel = state.channel.take() else { return (busyValue(), false, false) }
            let value = body(&channel)
            let awaits = channel.awaitsBlockLoad
            state.channel = consume channel
            if awaits { state.busy = true }
            return (value, Self.noteEdges(&state), awaits)
        }
        if edge { raiseIRQ() }
        if handOff { runOnWorker() }
        return value
    }

    /// What a register reads while the channel is busy: BSY for the command block and the
    /// control port, a floating bus for the data register.
    static func busyValue(_ port: UInt16, _ size: Int, _ location: IDEChannelLocation) -> UInt32 {
        let mask: UInt32 = size >= 4 ? .max : (UInt32(1) << (8 * UInt32(max(size, 1)))) - 1
        if port == location.commandBlockBase { return mask }
        return (0xFFFF_FF00 | UInt32(ATAStatus.busy)) & mask
    }

    // MARK: Writes: inline, or on the controller's thread when they reach storage

    func portWrite(port: UInt16, size: Int, value: UInt32) {
        write(.single(port: port, size: size, value: value))
    }

    func portWriteString(port: UInt16, size: Int, bytes: [UInt8]) {
        write(.string(port: port, size: size, bytes: bytes))
    }

    enum WriteOutcome { case done(edge: Bool), handOff, deferred, dropped(count: Int) }

    private func write(_ access: Write) {
        let outcome = state.withLock { state -> WriteOutcome in
            if state.busy {
                guard state.deferred.count < Self.deferredLimit else {
                    state.droppedWrites += 1
                    return .dropped(count: state.droppedWrites)
                }
                state.deferred.append(access)
                return .deferred
            }
            guard var channel = state.channel.take() else {
                state.droppedWrites += 1
                return .dropped(count: state.droppedWrites)
            }
            if Self.reachesStorage(access, channel) {
                state.channel = consume channel
                state.busy = true
                state.deferred.append(access)
                return .handOff
            }
            Self.apply(access, to: &channel)
            state.channel = consume channel
            return .done(edge: Self.noteEdges(&state))
        }
        switch outcome {
        case .done(let edge):
            if edge { raiseIRQ() }
        case .handOff:
            runOnWorker()
        case .deferred:
            break
        case .dropped(let count):
            // The first few, then at powers of two: a guest that keeps writing does not flood the log.
            if count <= 8 || count.nonzeroBitCount == 1 {
                context.logger.warning("partition \(context.partitionName): IDE write dropped while a command runs (\(count) so far)")
            }
        }
    }

    /// Whether `access` can reach storage: a command (which may read a block or flush), or data
    /// that completes a data-out block (which is written, and with the write cache off, flushed).
    static func reachesStorage(_ access: Write, _ channel: IDEChannel<Storage>) -> Bool {
        let location = channel.location
        switch access {
        case .single(let port, let size, _):
            if port == location.commandBlockBase + ATARegister.statusCommand { return true }
            // Byte-wide accesses at the data port still move a whole word.
            if port == location.commandBlockBase, let remaining = channel.dataOutBytesUntilBlockEnd {
                return max(size, 2) >= remaining
            }
            // A multi-byte access to a register below Command spills into the following ports.
            if location.commandBlockPorts.contains(port), Int(port) + size - 1 >= Int(location.commandBlockBase + ATARegister.statusCommand) {
                return true
            }
            return false
        case .string(let port, let size, let bytes):
            if port == location.commandBlockBase, let remaining = channel.dataOutBytesUntilBlockEnd {
                // Byte-wide elements are written one at a time, each moving a whole word.
                return bytes.count * (size == 1 ? 2 : 1) >= remaining
            }
            return location.commandBlockPorts.contains(port)
        }
    }

    static func apply(_ access: Write, to channel: inout IDEChannel<Storage>) {
        switch access {
        case .single(let port, let size, let value): channel.write(port: port, size: size, value: value)
        case .string(let port, let size, let bytes): channel.writeString(port: port, size: size, bytes: bytes)
        }
    }

    /// Runs `runDeferred` on the controller's thread (the caller set `busy`).
    private func runOnWorker() {
        if !worker.enqueue({ [self] in runDeferred() }) {
            // The controller is stopping: run here rather than leave the channel busy.
            runDeferred()
        }
    }

    /// On the controller's thread: reads the data-in block the channel awaits, and runs the
    /// waiting writes in order, without the lock (readers see BSY meanwhile), then hands the
    /// channel back.
    private func runDeferred() {
        var done = false
        // Edges the work owes, raised once the channel is free (see below).
        var edgeOwed = false
        while !done {
            let next = state.withLock { state -> (Write?, IDEChannel<Storage>)? in
                if state.channel?.awaitsBlockLoad == true, let channel = state.channel.take() { return (nil, channel) }
                guard !state.deferred.isEmpty, let channel = state.channel.take() else {
                    state.busy = false
                    return nil
                }
                return (state.deferred.removeFirst(), channel)
            }
            guard case (let access, var channel)? = next else { break }
            if let access {
                Self.apply(access, to: &channel)
            } else {
                channel.loadAwaitedBlock()
            }
            let failure = channel.takeStorageFailure()
            let finished = channel
            let (edge, failures) = state.withLock { state -> (Bool, Int) in
                state.channel = finished
                if failure != nil { state.storageFailures += 1 }
                // Nothing more to run: the channel is free before the interrupt is raised, so the
                // guest's handler does not find it busy (libata's `__ata_sff_port_intr` would
                // take the interrupt for a spurious one, and an edge-triggered IRQ 14 comes no
                // second time). Edges from earlier steps wait for this too.
                if state.deferred.isEmpty, state.channel?.awaitsBlockLoad != true {
                    state.busy = false
                    done = true
                }
                return (Self.noteEdges(&state), state.storageFailures)
            }
            if let failure, failures <= 8 || failures.nonzeroBitCount == 1 {
                context.logger.warning("partition \(context.partitionName): IDE disk: \(failure) (\(failures) so far)")
            }
            edgeOwed = edgeOwed || edge
        }
        if edgeOwed { raiseIRQ() }
    }

    /// Records the channel's rising-edge count; whether it moved (an IRQ edge is owed).
    private static func noteEdges(_ state: inout State) -> Bool {
        guard let edges = state.channel?.interruptRisingEdges, edges != state.edges else { return false }
        state.edges = edges
        return true
    }

    private func raiseIRQ() {
        irq.withLock { $0 }?.signal()
    }
}
