import Glibc

/// The process's limit on open descriptors (RLIMIT_NOFILE).
public enum OpenFileLimit {
    /// Raises the soft limit to the hard one, as a server holding many descriptors does (the
    /// root holds several per partition: RAM, processors, doorbells, interrupt lines). The soft
    /// limit is often 1,024 for compatibility with select(2), which nothing here uses.
    /// - Returns: the soft limit in force afterwards.
    @discardableResult
    public static func raiseToHard() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }

    /// RLIMIT_NOFILE as getrlimit(2) and setrlimit(2) take it (Glibc imports the constant as an
    /// enum case).
    private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
}
