import Foundation
import Glibc
import ManagementAPI
import Testing

@Suite("Management client")
struct ManagementClientTests {
    @Test func aMissingSocketMeansTheRootIsNotRunning() async throws {
        let client = ManagementClient(socketPath: "/nonexistent/hv/root.sock")
        await #expect {
            _ = try await client.send(.GET, "/v1/root")
        } throws: { error in
            guard case .rootNotRunning = error as? ManagementClientError else { return false }
            return "\(error)".contains("start it with `hv root`")
        }
    }

    /// A root that accepts the connection but never answers (the rig once saw one wedged inside
    /// a nested VM) must not hang the CLI: the request fails with a sentence naming the fix.
    @Test func aRootThatNeverAnswersTimesOut() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hv-silent-\(getpid()).sock").path
        let listener = try SilentListener(path: path)
        defer { listener.close() }
        let client = ManagementClient(socketPath: path, timeout: .milliseconds(300))
        let started = ContinuousClock.now
        await #expect {
            _ = try await client.send(.GET, "/v1/partitions")
        } throws: { error in
            guard case .timedOut(let request, _) = error as? ManagementClientError else { return false }
            return request == "GET /v1/partitions" && "\(error)".contains("did not answer")
        }
        // Well under the 120-second default, so a client that ignored its timeout fails here;
        // generous because every suite of the run shares NIO's event loops, and a sanitized run
        // once took 30.4 s to deliver this 300 ms deadline.
        #expect(ContinuousClock.now - started < .seconds(90))
    }
}

/// A Unix stream socket that listens (the kernel completes connections in its backlog) and
/// never reads or writes.
struct SilentListener {
    let descriptor: Int32
    let path: String

    init(path: String) throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.prefix(bytes.count - 1).enumerated() { bytes[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 4) == 0 else { Glibc.close(fd); throw POSIXError(.EADDRINUSE) }
        descriptor = fd
        self.path = path
    }

    func close() {
        Glibc.close(descriptor)
        unlink(path)
    }
}
