extension ManagementClient {
    /// `GET /v1/partitions/{name}/stats`: what the partition has consumed so far.
    public func statistics(_ name: String) async throws(ManagementClientError) -> PartitionStatistics {
        try await request(.GET, "/v1/partitions/\(name)/stats", as: PartitionStatistics.self)
    }

    /// `PATCH /v1/partitions/{name}/cpu`: changes the named processor controls of a partition.
    @discardableResult
    public func setProcessorControls(_ name: String, _ change: ProcessorSettings) async throws(ManagementClientError)
        -> PartitionInfo
    {
        try await request(.PATCH, "/v1/partitions/\(name)/cpu", body: change, as: PartitionInfo.self)
    }
}
