import Dispatch
import Foundation
import Synchronization

/// Stops every live `LocalDeployment` when this process is asked to terminate.
///
/// `hv demo`, `hv bench` and the tests start a root and a parent as child processes. Without
/// this, `kill <hv>` (or closing its terminal) would leave them running, holding KVM VMs and
/// guest memory. On SIGINT, SIGTERM or SIGHUP the handler stops each deployment (parent, then
/// root, each given a grace period) and then lets the signal take its default effect, so the
/// process still ends with the status a shell expects (130 for Ctrl-C, 143 for SIGTERM).
final class TerminationHandler: Sendable {
    static let shared = TerminationHandler()

    private static let signals = [SIGINT, SIGTERM, SIGHUP]

    private struct State {
        var deployments: [ObjectIdentifier: WeakDeployment] = [:]
        var sources: [any DispatchSourceSignal] = []
        var terminating = false
    }

    private struct WeakDeployment {
        weak var deployment: LocalDeployment?
    }

    private let state = Mutex(State())

    /// Tracks `deployment` until it stops; installs the signal sources on first use.
    func register(_ deployment: LocalDeployment) {
        state.withLock { state in
            state.deployments[ObjectIdentifier(deployment)] = WeakDeployment(deployment: deployment)
            guard state.sources.isEmpty else { return }
            state.sources = Self.signals.map { number in
                // The dispatch source sees the signal only while its default action is off.
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { [self] in terminate(signal: number) }
                source.resume()
                return source
            }
        }
    }

    func unregister(_ deployment: LocalDeployment) {
        _ = state.withLock { $0.deployments.removeValue(forKey: ObjectIdentifier(deployment)) }
    }

    /// Blocks for good once a termination signal is being handled, so the code that was
    /// running when it arrived (which now sees its root vanish and fails) cannot exit with its
    /// own status, or leave a process behind, before the handler has stopped everything.
    func waitIfTerminating() {
        guard state.withLock({ $0.terminating }) else { return }
        while true { sleep(60) }
    }

    private func terminate(signal number: Int32) {
        let deployments = state.withLock { state in
            state.terminating = true
            defer { state.deployments.removeAll() }
            return state.deployments.values.compactMap(\.deployment)
        }
        for deployment in deployments { deployment.stopProcesses() }
        // Back to the default action, then deliver the signal again so it ends the process. To
        // this thread, with the signal unblocked here: a dispatch queue's thread blocks signals,
        // and a `kill` of the process would leave the signal to another thread while this one
        // ran on into the `exit` below (the process then ended with status 143, not by SIGTERM).
        // `raise` delivers an unblocked signal before it returns (POSIX).
        signal(number, SIG_DFL)
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, number)
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
        raise(number)
        // Not reached: the default action of SIGINT, SIGTERM and SIGHUP ends the process.
        exit(128 + number)
    }
}
