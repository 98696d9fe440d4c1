import HyperV
import VMBusClient
import VMBusProtocol
import VMBusServer

/// The real client core and the real server, wired back to back in memory: the client's posts
/// go to the server (as HvPostMessage would carry them, on the connection the client chose),
/// the server's posts come back to the client (as SynIC messages), and the device side accepts
/// every open. Time is a number the test moves.
struct Loopback {
    var client: VMBusClient
    var server: VMBusServer
    /// "Now" in nanoseconds; every post takes a microsecond, and a post's delay passes first.
    var now: UInt64 = 1_000_000
    /// Everything the client reported, in order.
    var events: [ClientEvent] = []
    /// Everything the server asked for, in order.
    var serverActions: [ServerAction] = []
    /// Every post attempt: message, connection and the delay asked before it.
    var attempts: [(message: ChannelMessage, connection: ConnectionID, delay: UInt64)] = []
    /// Statuses the hypervisor answers the next posts with before any succeeds (consumed in order).
    var postFailures: [HypercallStatus] = []
    /// Host → guest messages not yet delivered.
    var toGuest: [ChannelMessage] = []
    /// Whether the device side accepts opens.
    var acceptOpens = true
    /// Takes over the host's part for the messages it returns answers for (`nil`: the server answers).
    var intercept: ((ChannelMessage, ConnectionID) -> [ChannelMessage]?)?

    static let heartbeat = GUID("57164f39-9115-4e78-ab55-382f3bd5422d")!

    init(devices: Int = 3, configuration: VMBusClient.Configuration = .init(), memoryMiB: UInt64 = 64) {
        client = VMBusClient(configuration: configuration)
        server = VMBusServer(configuration: .init(memorySize: memoryMiB << 20, processorCount: 2))
        for index in 0..<devices { addDevice(index) }
    }

    mutating func addDevice(_ index: Int) {
        var instance = [UInt8](repeating: 0, count: 16)
        instance[15] = UInt8(truncatingIfNeeded: index + 1)
        let offer = ChannelOffer(interfaceType: Self.heartbeat, interfaceInstance: GUID(wireBytes: instance)!,
                                 name: "device\(index)")
        toGuest += posted(server.addOffer(offer)?.actions ?? [])
        pump([])
    }

    /// The messages among server actions.
    func posted(_ actions: [ServerAction]) -> [ChannelMessage] {
        actions.compactMap { if case .post(_, _, let message) = $0 { message } else { nil } }
    }

    /// Runs a request of the program and everything it sets off; returns the events it produced.
    @discardableResult
    mutating func run(_ request: (inout VMBusClient) throws(ClientError) -> [ClientAction]) throws(ClientError)
        -> [ClientEvent]
    {
        let before = events.count
        pump(try request(&client))
        return Array(events[before...])
    }

    /// Delivers `message` to the client as if the host had posted it; returns the events.
    @discardableResult
    mutating func deliver(_ message: ChannelMessage) -> [ClientEvent] {
        let before = events.count
        pump(client.handle(message.bytes, now: now))
        return Array(events[before...])
    }

    /// Moves time to `time` and ticks the client; returns the events.
    @discardableResult
    mutating func advance(to time: UInt64) -> [ClientEvent] {
        now = max(now, time)
        let before = events.count
        pump(client.tick(now: now))
        return Array(events[before...])
    }

    /// Carries out client actions; host messages are delivered as soon as they are posted (a
    /// host that answers at once and a driver that reads between posts).
    mutating func pump(_ actions: [ClientAction]) {
        var queue = actions[...]
        while true {
            if !toGuest.isEmpty {
                let message = toGuest.removeFirst()
                queue += client.handle(message.bytes, now: now)
            } else if let action = queue.popFirst() {
                switch action {
                case .post(let message, let connection, let delay):
                    now += delay
                    attempts.append((message, connection, delay))
                    let status = postFailures.isEmpty ? .success : postFailures.removeFirst()
                    if status == .success { host(message, connection) }
                    now += 1_000
                    queue += client.postCompleted(status, now: now)
                case .wait:
                    break
                case .event(let event):
                    events.append(event)
                }
            } else {
                return
            }
        }
    }

    /// The host's side of a post.
    mutating func host(_ message: ChannelMessage, _ connection: ConnectionID) {
        if let intercept, let answers = intercept(message, connection) {
            toGuest += answers
            return
        }
        var pending = server.handle(message.bytes, connectionID: connection, from: 0)[...]
        while let action = pending.popFirst() {
            serverActions.append(action)
            switch action {
            case .post(_, _, let answer): toGuest.append(answer)
            case .open(let request): pending += server.completeOpen(channel: request.channel, accepted: acceptOpens)
            default: break
            }
        }
    }

    /// Connects, newest version first, and collects the offers.
    mutating func connectAndRequestOffers() throws(ClientError) {
        try run { client throws(ClientError) in try client.connect(monitorPage1: 0x10000, monitorPage2: 0x11000) }
        try run { client throws(ClientError) in try client.requestOffers() }
    }

    /// Creates a GPADL of `pages` for `channel`; returns its handle.
    mutating func createGPADL(channel: UInt32, pages: [UInt64]) throws(ClientError) -> UInt32 {
        let created = try client.createGPADL(channel: channel, pageNumbers: pages)
        pump(created.actions)
        return created.gpadl
    }

    /// Pages `first..<first + count`.
    static func pages(_ count: Int, from first: UInt64 = 0x200) -> [UInt64] {
        (0..<count).map { first + UInt64($0) }
    }

    /// The type of every post attempt, in order.
    var postedTypes: [ChannelMessageType] { attempts.map(\.message.type) }
}
