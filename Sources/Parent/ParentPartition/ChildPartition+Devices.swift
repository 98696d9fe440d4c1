import DeviceHost
import DeviceModel
import LinuxSupport
import VMBusHost
import VMBusProtocol

/// A device built for a partition, with how the guest reaches it.
enum BuiltDevice: Sendable {
    case vmbus(classID: GUID, any VirtualServiceProvider)
    case emulated(any EmulatedDevice)

    var instance: DeviceInstance {
        switch self {
        case .vmbus(_, let provider): .vmbus(provider)
        case .emulated(let device): .emulated(device)
        }
    }
}

extension ChildPartition {
    /// Builds the partition's devices when it is attached and starts its VMBus service with
    /// the synthetic ones (restoring the state an earlier parent saved, if any). A device that
    /// cannot be built is left out, reported as a fact. Runs on the control thread.
    /// - Parameter resources: the devices' host resources, device by device.
    func attachDevices(_ specs: [DeviceSpec], resources: [OwnedDescriptor]) {
        var synthetic: [VMBusService.Device] = []
        var remaining = resources[...]
        for spec in specs {
            let own = Array(remaining.prefix(spec.resources.count))
            remaining = remaining.dropFirst(spec.resources.count)
            switch build(spec, resources: own) {
            case .vmbus(let classID, let provider)?:
                synthetic.append(VMBusService.Device(spec: spec, classID: classID, provider: provider))
            case .emulated(let device)?:
                add(EmulatedDeviceService(device: device, partition: self, saved: savedState))
            case nil:
                break
            }
        }
        let service = VMBusService(partition: self, devices: synthetic, saved: savedState)
        vmbus.withLock { $0 = service }
        add(service)
    }

    /// A device added while the partition runs (control thread): offered on VMBus at once.
    func addDevice(_ spec: DeviceSpec, resources: [OwnedDescriptor]) {
        guard built.withLock({ $0[spec.instance] }) == nil else {
            logger.warning("partition \(name): the root added device \(spec.instance) twice; ignored")
            return
        }
        switch build(spec, resources: resources) {
        case .vmbus(let classID, let provider)?:
            vmbus.withLock { $0 }?.add(VMBusService.Device(spec: spec, classID: classID, provider: provider))
            logger.info("partition \(name): \(spec.kind) \(spec.instance) added")
        case .emulated?:
            // The root refuses these (`DeviceType.hotPluggable`); a root that sends one anyway
            // gets it ignored.
            built.withLock { _ = $0.removeValue(forKey: spec.instance) }
            logger.warning("partition \(name): an emulated \(spec.kind) cannot be added while the partition runs")
        case nil:
            break
        }
    }

    /// A device removed while the partition runs (control thread): its channels are rescinded.
    func removeDevice(_ instance: GUID) {
        // Forgotten only if it can go: an emulated device refused here keeps serving its ports.
        let removed = built.withLock { built -> Bool? in
            guard let device = built[instance] else { return nil }
            guard case .vmbus = device else { return false }
            built[instance] = nil
            return true
        }
        guard let removed else {
            logger.warning("partition \(name): the root removed device \(instance), which it does not have")
            return
        }
        guard removed else {
            logger.warning("partition \(name): an emulated device cannot be removed while the partition runs")
            return
        }
        vmbus.withLock { $0 }?.remove(instance: instance)
        logger.info("partition \(name): device \(instance) removed")
    }

    /// New settings for a running device (control thread), applied by its type.
    func changeDevice(_ spec: DeviceSpec, resources: [OwnedDescriptor]) {
        guard let device = built.withLock({ $0[spec.instance] }),
              let type = deviceTypes.first(where: { $0.kind == spec.kind }) else {
            logger.warning("partition \(name): the root changed device \(spec.instance), which it does not have")
            return
        }
        do throws(DeviceError) {
            try Self.change(type, device.instance, spec, resources, self)
            report(["device.\(spec.instance).changed": "ok"])
        } catch {
            logger.warning("partition \(name): \(error)")
            report(["device.\(spec.instance).changed": error.description])
        }
    }

    /// Builds the device `spec` names, from the settings the root resolved, and records it.
    /// Returns `nil` (after logging and reporting why) when it cannot be built.
    private func build(_ spec: DeviceSpec, resources: [OwnedDescriptor]) -> BuiltDevice? {
        do throws(DeviceError) {
            guard let type = deviceTypes.first(where: { $0.kind == spec.kind }) else {
                throw .unknownKind(spec.kind, known: deviceTypes.map { $0.kind })
            }
            let device = try Self.build(type, spec, resources, self)
            built.withLock { $0[spec.instance] = device }
            return device
        } catch {
            logger.error("partition \(name): \(error)")
            report(["device.\(spec.kind).error": error.description])
            return nil
        }
    }

    private static func build<T: ParentDevice>(_ type: T.Type, _ spec: DeviceSpec, _ resources: [OwnedDescriptor],
                                               _ context: ChildPartition) throws(DeviceError) -> BuiltDevice
    {
        let settings = try DeviceCatalog.settings(of: spec, as: T.self)
        switch (T.bus, try T.make(settings, instance: spec.instance, resources: resources, context: context)) {
        case (.vmbus(let classID), .vmbus(let provider)):
            return .vmbus(classID: classID, provider)
        case (.emulated, .emulated(let device)):
            return .emulated(device)
        default:
            throw .unavailable(kind: spec.kind, reason: "it built a device for another bus than the one it declares")
        }
    }

    private static func change<T: ParentDevice>(_ type: T.Type, _ device: DeviceInstance, _ spec: DeviceSpec,
                                                _ resources: [OwnedDescriptor], _ context: ChildPartition) throws(DeviceError)
    {
        let settings = try DeviceCatalog.settings(of: spec, as: T.self)
        try T.change(device, to: settings, resources: resources, context: context)
    }
}
