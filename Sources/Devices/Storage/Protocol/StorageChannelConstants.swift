import HyperV
import VMBusProtocol

/// Fixed numbers of the synthetic storage channel (drivers/scsi/storvsc_drv.c).
public enum StorageChannelConstants {
    /// The offer's class GUID for a synthetic SCSI controller, ba6163d9-04a1-4d29-b605-72e2ffb1dc7f.
    public static let scsiInterfaceType = GUID(0xBA61_63D9, 0x04A1, 0x4D29, 0xB605_72E2_FFB1_DC7F)
    /// Transaction ID of initialization requests (`VMBUS_RQST_INIT`, U64_MAX − 2).
    public static let initializationTransactionID = UInt64.max - 2
    /// Transaction ID of a bus reset (`VMBUS_RQST_RESET`, U64_MAX − 3).
    public static let resetTransactionID = UInt64.max - 3
    /// Transaction ID of host → guest notifications (ENUMERATE_BUS, REMOVE_DEVICE).
    public static let unsolicitedTransactionID: UInt64 = 0
    /// The largest packet the guest reads: a 16-byte descriptor and a 64-byte vstor_packet
    /// (`STORVSC_MAX_PKT_SIZE`).
    public static let maximumInboundPacket = PacketDescriptor.size + VStorPacket.size
    /// Bytes one completion takes in the host → guest ring: 80 plus the 8-byte trailer.
    public static let completionRingBytes = maximumInboundPacket + 8
    /// Each ring's size as Linux allocates it, header page included (`storvsc_ringbuffer_size`).
    public static let ringSize = 128 * 1024
    /// SCSI channels (paths), targets per channel and LUNs per target Linux scans
    /// (`STORVSC_MAX_CHANNELS`, `STORVSC_MAX_TARGETS`, `STORVSC_MAX_LUNS_PER_TARGET`).
    public static let maximumPaths = 8
    public static let maximumTargets = 2
    public static let maximumLUNs = 255
}
