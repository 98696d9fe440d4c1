import Logging
import Synchronization

/// A log handler that keeps the lines it is given, for tests that count what was logged.
public struct LineCounter: LogHandler, Sendable {
    private let storage = LineStorage()
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    final class LineStorage: Sendable {
        let lines = Mutex<[String]>([])
    }

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        storage.lines.withLock { $0.append(event.message.description) }
    }

    /// How many lines contain `text`.
    public func lines(containing text: String) -> Int { storage.lines.withLock { $0.filter { $0.contains(text) }.count } }
}
