import Glibc

// Every system call of the KVM layer goes through the four functions below, as swift-system's
// go through its `system_*` shims. In debug builds (ENABLE_MOCKING) a test can install a
// `MockKernel` for the current task: the calls are then recorded and answered by it instead of
// the kernel, so the layer's logic (request sequences, arguments, errno handling, exit decoding)
// is tested without /dev/kvm. Release builds call the kernel directly.

/// open(2).
@usableFromInline
func system_open(_ path: String, _ flags: Int32) -> Int32 {
    #if ENABLE_MOCKING
    if let kernel = MockKernel.current { return kernel.open(path, flags) }
    #endif
    return Glibc.open(path, flags)
}

/// ioctl(2) with a pointer argument (or 0 when `argument` is nil).
@usableFromInline
func system_ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer?) -> Int32 {
    #if ENABLE_MOCKING
    if let kernel = MockKernel.current { return kernel.ioctl(fd, request, argument: argument, value: 0) }
    #endif
    return argument.map { ioctl(fd, request, $0) } ?? ioctl(fd, request, 0)
}

/// ioctl(2) with an integer argument.
@usableFromInline
func system_ioctl(_ fd: Int32, _ request: UInt, value: Int32) -> Int32 {
    #if ENABLE_MOCKING
    if let kernel = MockKernel.current { return kernel.ioctl(fd, request, argument: nil, value: Int(value)) }
    #endif
    return ioctl(fd, request, value)
}

/// A shared read-write mmap(2) of `length` bytes of `fd`; nil (errno set) on failure.
func system_mmap(_ fd: Int32, length: Int) -> UnsafeMutableRawPointer? {
    #if ENABLE_MOCKING
    if let kernel = MockKernel.current { return kernel.mmap(fd, length: length) }
    #endif
    let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    guard let mapped, mapped != MAP_FAILED else { return nil }
    return mapped
}

/// munmap(2). Mappings made under a `MockKernel` are real anonymous mappings, so unmapping them
/// after the mock is gone is still correct.
func system_munmap(_ address: UnsafeMutableRawPointer, length: Int) {
    #if ENABLE_MOCKING
    if let kernel = MockKernel.current { kernel.munmap(address, length: length) }
    #endif
    _ = munmap(address, length)
}
