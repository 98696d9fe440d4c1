#if ENABLE_MOCKING
import CKVM
import Glibc
import Synchronization
import SystemPackage

/// A scripted stand-in for the kernel behind /dev/kvm (debug builds only): installed for a task
/// with `MockKernel.$current.withValue(kernel) { … }`, it records every system call the KVM layer
/// makes and answers it, by default as a KVM with every capability would, or as a test scripts.
///
/// Descriptors it hands out (for /dev/kvm, VMs and vCPUs) are real descriptors of /dev/null, and
/// kvm_run mappings are real anonymous pages, so ownership, close(2) and munmap(2) stay real.
final class MockKernel: Sendable {
    /// The kernel the calling task's KVM system calls go to; nil means the real one.
    @TaskLocal static var current: MockKernel?

    /// One recorded system call.
    struct Call: Hashable, Sendable {
        enum Kind: Hashable, Sendable {
            case open(path: String)
            case ioctl(request: UInt)
            case mmap(length: Int)
            case munmap(length: Int)
        }

        var kind: Kind
        /// The descriptor the call was made on (-1 for open).
        var fd: Int32
        /// The integer argument of an ioctl that takes one.
        var value: Int
        /// For an ioctl with a pointer argument: the bytes it pointed at when the call was made,
        /// as many as the request number encodes (_IOC_SIZE).
        var argument: [UInt8]

        /// The request number of an ioctl, nil for other calls.
        var request: UInt? {
            if case .ioctl(let request) = kind { return request }
            return nil
        }
    }

    /// Answers an ioctl: its result, or the errno it fails with. The pointer is the caller's
    /// argument, which the answer may fill in as the kernel would.
    typealias Responder = @Sendable (Call, UnsafeMutableRawPointer?) -> Result<Int32, Errno>

    private struct State {
        var trace: [Call] = []
        var failures: [Call.Kind: [Errno]] = [:]
        var ioctlFailures: [UInt: [Errno]] = [:]
        var responders: [UInt: Responder] = [:]
        var mappings: [Int32: UInt] = [:]
    }

    private let state = Mutex(State())

    init() {}

    /// Every call so far, oldest first.
    var trace: [Call] { state.withLock { $0.trace } }

    /// The ioctl request numbers so far, oldest first.
    var requests: [UInt] { trace.compactMap(\.request) }

    /// Makes the next calls of `request` fail with `errors`, one per call, before any answer.
    func fail(_ request: UInt, with errors: Errno...) {
        state.withLock { $0.ioctlFailures[request, default: []] += errors }
    }

    /// Makes the next open(2) calls fail with `errors`.
    func failOpen(with errors: Errno...) {
        state.withLock { $0.failures[.open(path: KVMSystem.devicePath), default: []] += errors }
    }

    /// Makes the next mmap(2) calls of `length` bytes fail with `errors`.
    func failMmap(length: Int, with errors: Errno...) {
        state.withLock { $0.failures[.mmap(length: length), default: []] += errors }
    }

    /// Answers `request` with `responder` from now on.
    func respond(to request: UInt, with responder: @escaping Responder) {
        state.withLock { $0.responders[request] = responder }
    }

    /// The kvm_run page mapped for vCPU descriptor `fd`.
    func runPage(of fd: Int32) -> UnsafeMutablePointer<kvm_run>? {
        state.withLock { $0.mappings[fd] }.flatMap { UnsafeMutablePointer(bitPattern: $0) }
    }

    // MARK: The system calls

    func open(_ path: String, _ flags: Int32) -> Int32 {
        let call = Call(kind: .open(path: path), fd: -1, value: Int(flags), argument: [])
        if let error = record(call, failureKey: call.kind) { return fail(error) }
        return Self.newDescriptor()
    }

    func ioctl(_ fd: Int32, _ request: UInt, argument: UnsafeMutableRawPointer?, value: Int) -> Int32 {
        let size = Int((request >> 16) & 0x3FFF)
        let bytes = argument.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
        let call = Call(kind: .ioctl(request: request), fd: fd, value: value, argument: bytes)
        let (error, responder) = state.withLock { state -> (Errno?, Responder?) in
            state.trace.append(call)
            if var queued = state.ioctlFailures[request], !queued.isEmpty {
                let error = queued.removeFirst()
                state.ioctlFailures[request] = queued
                return (error, nil)
            }
            return (nil, state.responders[request])
        }
        if let error { return fail(error) }
        switch (responder ?? Self.defaultAnswer)(call, argument) {
        case .success(let result): return result
        case .failure(let error): return fail(error)
        }
    }

    func mmap(_ fd: Int32, length: Int) -> UnsafeMutableRawPointer? {
        let call = Call(kind: .mmap(length: length), fd: fd, value: 0, argument: [])
        if let error = record(call, failureKey: call.kind) {
            _ = fail(error)
            return nil
        }
        let page = Glibc.mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let page, page != MAP_FAILED else { return nil }
        state.withLock { $0.mappings[fd] = UInt(bitPattern: page) }
        return page
    }

    func munmap(_ address: UnsafeMutableRawPointer, length: Int) {
        let call = Call(kind: .munmap(length: length), fd: -1, value: 0, argument: [])
        state.withLock { state in
            state.trace.append(call)
            if let fd = state.mappings.first(where: { $0.value == UInt(bitPattern: address) })?.key {
                state.mappings[fd] = nil
            }
        }
    }

    // MARK: Helpers

    /// Records `call`; returns the errno it must fail with, if one was scripted.
    private func record(_ call: Call, failureKey: Call.Kind) -> Errno? {
        state.withLock { state in
            state.trace.append(call)
            guard var queued = state.failures[failureKey], !queued.isEmpty else { return nil }
            let error = queued.removeFirst()
            state.failures[failureKey] = queued
            return error
        }
    }

    private func fail(_ error: Errno) -> Int32 {
        Glibc.errno = error.rawValue
        return -1
    }

    /// A fresh descriptor the caller may own and close.
    static func newDescriptor() -> Int32 {
        Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
    }

    /// The size of each vCPU's kvm_run mapping this mock reports.
    static let runMappingSize = 3 * 4096

    /// What a KVM with every capability answers.
    static let defaultAnswer: Responder = { call, _ in
        switch call.request {
        case CKVM_GET_API_VERSION: .success(KVM_API_VERSION)
        case CKVM_GET_VCPU_MMAP_SIZE: .success(Int32(runMappingSize))
        case CKVM_CHECK_EXTENSION: .success(1)
        case CKVM_CREATE_VM, CKVM_CREATE_VCPU: .success(newDescriptor())
        default: .success(0)
        }
    }
}
#endif
