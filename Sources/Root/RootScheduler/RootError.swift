import DeviceModel
import LinuxSupport
import ManagementAPI
import Partition

/// Why a management request failed. The cause keeps its type (a partition's error, and through
/// it KVM's or a system call's; the parent link's), `kind` is the one place that maps causes onto
/// the API's statuses, and `description` is the sentence users see.
public enum RootError: Error, Equatable, CustomStringConvertible {
    /// No partition has this name.
    case notFound(String)
    /// A live partition already has this name.
    case nameTaken(String)
    /// The request, or the configuration it carries, is malformed; the sentence names the fix.
    case invalidRequest(String)
    /// The request conflicts with the state of this or other partitions (a reserve that cannot
    /// be met beside the others', controls of a partition that has stopped); the sentence says why.
    case conflict(String)
    /// `request` (e.g. "Cannot start alpha") failed in the partition: its state, its image, KVM.
    case partition(request: String, PartitionError)
    /// `request` needed the parent partition, which could not be reached.
    case control(request: String, ParentLinkError)
    /// `request` named a device that does not exist, cannot change now, or has bad settings.
    case device(request: String, DeviceError)
    /// A virtual switch request failed.
    case virtualSwitch(SwitchError)
    /// A table the request would grow is full (partitions); the sentence names the fix.
    case limitReached(String)
    /// The root cannot take the request now (it serves as many requests that wait as it allows,
    /// or the parent has not taken the partition's earlier changes); the sentence says which,
    /// and the request may be sent again.
    case busy(String)

    /// The class of failure, which decides the HTTP status.
    public var kind: ManagementErrorKind {
        switch self {
        case .notFound: .notFound
        case .nameTaken, .limitReached: .conflict
        case .invalidRequest: .badRequest
        case .conflict: .conflict
        case .partition(_, let error):
            switch error {
            case .invalidSpecification, .boot: .badRequest
            case .invalidTransition, .timedOut: .conflict
            case .hypervisor, .kvm, .system: .internalError
            }
        case .control: .internalError
        case .device(_, let error):
            switch error {
            case .noSuchDevice: .notFound
            case .notWhileRunning: .conflict
            default: .badRequest
            }
        case .virtualSwitch(let error): error.kind
        case .busy: .unavailable
        }
    }

    /// The HTTP status code.
    public var status: Int { kind.rawValue }

    public var description: String {
        switch self {
        case .notFound(let name): "No partition is named \(name): list them with `hv partition list`."
        case .nameTaken(let name):
            "A partition named \(name) exists: delete it first with `hv partition delete \(name)`."
        case .invalidRequest(let sentence), .conflict(let sentence), .limitReached(let sentence), .busy(let sentence):
            sentence
        case .partition(let request, .invalidSpecification(let reason)): Self.sentence(request, reason)
        case .partition(let request, let error): Self.sentence(request, "\(error)")
        case .control(let request, let error): Self.sentence(request, "\(error)")
        case .device(let request, let error): Self.sentence(request, "\(error)")
        case .virtualSwitch(let error): error.description
        }
    }

    /// "<request>: <cause>." with one full stop, whether or not the cause ends with one.
    private static func sentence(_ request: String, _ cause: String) -> String {
        "\(request): \(cause)" + (cause.hasSuffix(".") ? "" : ".")
    }

    /// The API's answer for this error.
    public var answer: ManagementError { ManagementError(kind, message: description) }
}

/// Why the root could not get a request to the parent partition.
public enum ParentLinkError: Error, Equatable, CustomStringConvertible {
    /// No parent partition is connected.
    case notConnected
    /// The control socket refused the message (the parent is going away).
    case sendFailed(SystemError)
    /// The parent did not answer a request for `what` in time.
    case noAnswer(String)
    /// The parent did not set up a partition's devices (`partitionReady`) within `seconds`.
    case devicesNotSetUp(seconds: UInt64)

    public var description: String {
        switch self {
        case .notConnected: "the parent partition is not connected; start it with `hv parent`"
        case .sendFailed(let error): "the parent partition could not be reached (\(error)); check that `hv parent` runs"
        case .noAnswer(let what): "the parent partition did not send \(what) in time; check its log"
        case .devicesNotSetUp(let seconds):
            "the parent partition has not set up its devices within \(seconds) s; check the parent's log, then try again"
        }
    }
}
