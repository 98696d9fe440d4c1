import ControlProtocol
import DeviceModel
import LinuxSupport
import ManagementAPI
import VMBusProtocol

extension RootScheduler {
    /// Checks a partition configuration as `create` does before it touches any file or KVM: its
    /// fields, its devices against `catalog`, and that the partition, once created, can be
    /// handed to the parent in one control message.
    /// - Returns: the resolved devices.
    public static func validate(_ configuration: PartitionConfiguration, catalog: DeviceCatalog) throws(RootError)
        -> [DeviceSpec]
    {
        if let problem = configuration.problem(catalog: catalog) {
            throw .invalidRequest("Invalid partition configuration: \(problem).")
        }
        let devices: [DeviceSpec]
        do throws(DeviceError) {
            devices = try configuration.resolvedDevices(catalog: catalog)
        } catch {
            throw .invalidRequest("Invalid partition configuration: \(error).")
        }
        try checkHandOver(name: configuration.name, processors: configuration.processors, devices: devices)
        return devices
    }

    /// Refuses devices the parent could not be handed: the partition's attachment (sent again
    /// whenever the parent reconnects) must fit in one control message and its descriptors in
    /// one SCM_RIGHTS array. Without this check a configuration the catalog accepts could not
    /// reach the parent (the socket refuses oversized messages).
    static func checkHandOver(name: String, processors: Int, devices: [DeviceSpec]) throws(RootError) {
        // The largest form of everything that varies: both SynIC pages of every processor.
        let pages = (0..<UInt32(max(0, processors))).map {
            ProcessorPages(vp: $0, synicEnabled: true, messagePage: .max, eventFlagsPage: .max)
        }
        let attachment = PartitionAttachment(
            partitionID: .max, name: name, memorySize: .max, processorCount: UInt32(max(0, processors)),
            clock: ReferenceClock(tscFrequencyHz: 0, scale: 0, guestTSCOffset: 0, referenceOffset: 0),
            processors: pages, devices: devices)
        let message = RootMessage.partitionAttached(attachment)
        let size = message.bytes.count
        guard size <= SequencedPacketSocket.maximumMessageSize,
              message.descriptorCount <= SequencedPacketSocket.maximumDescriptors else {
            throw .invalidRequest("""
                Invalid partition configuration: its devices' settings take \(size) bytes to hand to the parent \
                partition, more than the \(SequencedPacketSocket.maximumMessageSize) one control message carries; \
                shorten them or use fewer devices.
                """)
        }
    }
}
