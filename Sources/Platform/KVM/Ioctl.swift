import Glibc
import LinuxSupport
import SystemPackage

/// The single choke point for KVM ioctls: retries EINTR where the request is idempotent and
/// turns failures into `KVMError`. The call itself goes through `system_ioctl` (Syscalls.swift).
@inlinable
func kvmIoctl(
    _ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer?, _ operation: KVMOperation,
    retryOnInterrupt: Bool = true
) throws(KVMError) -> Int32 {
    while true {
        let result = system_ioctl(fd, request, argument)
        if result >= 0 { return result }
        let error = Errno.current
        if error == .interrupted && retryOnInterrupt { continue }
        throw KVMError(operation, errno: error)
    }
}

/// An ioctl whose argument is an integer rather than a pointer.
@inlinable
func kvmIoctl(_ fd: Int32, _ request: UInt, value: Int32, _ operation: KVMOperation) throws(KVMError) -> Int32 {
    while true {
        let result = system_ioctl(fd, request, value: value)
        if result >= 0 { return result }
        let error = Errno.current
        if error == .interrupted { continue }
        throw KVMError(operation, errno: error)
    }
}

/// An ioctl taking a pointer to `value`.
@inlinable
func kvmIoctl<T>(_ fd: Int32, _ request: UInt, _ value: inout T, _ operation: KVMOperation) throws(KVMError) -> Int32 {
    try withUnsafeMutableBytes(of: &value) { bytes throws(KVMError) in
        // SAFETY: the kernel reads/writes at most sizeof(T) bytes, the size of `value`.
        try kvmIoctl(fd, request, bytes.baseAddress, operation)
    }
}

/// `Array.withUnsafeMutableBytes`, keeping the body's typed error (the standard library's
/// version only rethrows `any Error`).
@inlinable
func withMutableBytes<Element, T, E: Error>(
    of array: inout [Element], _ body: (UnsafeMutableRawBufferPointer) throws(E) -> T
) throws(E) -> T {
    let result: Result<T, E> = array.withUnsafeMutableBytes { bytes in
        do throws(E) { return .success(try body(bytes)) } catch { return .failure(error) }
    }
    return try result.get()
}
