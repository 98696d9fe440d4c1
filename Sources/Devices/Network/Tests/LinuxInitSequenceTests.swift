import NetworkProtocol
import NetworkVSP
import Testing
import VMBusProtocol

/// Linux 6.1's exact bring-up (`netvsc_connect_vsp`, `netvsc_init_buf`, `rndis_filter_device_add`,
/// `netvsc_open`) replayed against the VSP.
@Suite struct LinuxInitSequenceTests {
    static let mac = MACAddress(0x00, 0x15, 0x5D, 0x12, 0x34, 0x56)

    static func configuration(maximumVersion: NVSPVersion = .v61, subchannels: Int = 0) -> NetworkVSPConfiguration {
        var configuration = NetworkVSPConfiguration(macAddress: mac)
        configuration.maximumVersion = maximumVersion
        configuration.maximumSubchannels = subchannels
        return configuration
    }

    /// Runs the NVSP part: INIT tried newest first, NDIS config and version, both buffers.
    /// - Returns: the negotiated version.
    @discardableResult
    static func negotiate(_ guest: inout NetvscTestGuest, expect supported: NVSPVersion) -> NVSPVersion? {
        var negotiated: NVSPVersion?
        for version in NVSPVersion.linuxOrder {
            let actions = guest.inband(.initialize(minimum: version, maximum: version))
            let replies = completions(actions)
            #expect(replies.count == 1, "INIT \(version.rawValue) is always answered, never silently")
            guard case .initializeComplete(_, _, let status)? = replies.first?.message else {
                Issue.record("INIT answered with \(String(describing: replies.first?.message))")
                return nil
            }
            if status == .success {
                negotiated = version
                break
            }
            #expect(status == .failure)
        }
        #expect(negotiated == supported)
        guard let version = negotiated else { return nil }
        if version >= .v2 {
            let capabilities: NDISConfigCapabilities = version >= .v5 ? [.ieee8021q, .sriov, .teaming] : [.ieee8021q]
            #expect(guest.inband(.sendNDISConfig(mtu: 1514, capabilities: capabilities), completion: false).isEmpty,
                    "SEND_NDIS_CONFIG is never completed (sent with VMBUS_RQST_ID_NO_RESPONSE)")
        }
        #expect(guest.inband(.sendNDISVersion(major: 6, minor: version >= .v5 ? 30 : 1), completion: false).isEmpty)
        #expect(guest.vsp.ndisVersion?.minor == (version >= .v5 ? 30 : 1))

        let receive = completions(guest.inband(.sendReceiveBuffer(gpadl: NetvscTestGuest.receiveGPADL, id: 0xCAFE)))
        guard case .sendReceiveBufferComplete(let status, let sections)? = receive.first?.message else {
            Issue.record("no SEND_RECV_BUF_COMPLETE")
            return nil
        }
        #expect(status == .success)
        #expect(sections.count == 1)
        #expect(sections.first?.offset == 0)
        if let section = sections.first {
            #expect(section.subAllocationSize >= 68)
            #expect(Int(section.subAllocationSize) * Int(section.subAllocationCount)
                    <= guest.receivePages.count * NetvscTestGuest.pageSize)
            #expect(section.endOffset == section.subAllocationSize * section.subAllocationCount)
        }
        let send = completions(guest.inband(.sendSendBuffer(gpadl: NetvscTestGuest.sendGPADL, id: 0)))
        #expect(send.map(\.message) == [.sendSendBufferComplete(status: .success, sectionSize: 6144)])
        #expect(guest.vsp.sendSectionCount == 170, "255 pages / 6144 = 170 sections (netvsc_init_buf)")
        return version
    }

    /// Runs the RNDIS part in Linux's order and checks each answer.
    static func rndisBringUp(_ guest: inout NetvscTestGuest, version: NVSPVersion) {
        func ask(_ message: RNDISMessage, _ guest: inout NetvscTestGuest) -> RNDISMessage? {
            let actions = guest.control(message)
            let transmitCompletions = completions(actions)
            #expect(transmitCompletions.map(\.message) == [.sendRNDISPacketComplete(status: .success)],
                    "every control request gets its SEND_RNDIS_PKT_COMPLETE (rndis_filter_halt_device waits for them)")
            let responses = controlResponses(actions, guest: &guest)
            #expect(responses.count <= 1)
            return responses.first
        }
        let initID = guest.requestID()
        guard case .initializeComplete(let complete)? = ask(
            .initialize(requestID: initID, majorVersion: 1, minorVersion: 0, maximumTransferSize: 0x4000), &guest)
        else { Issue.record("no INIT_C"); return }
        #expect(complete.requestID == initID && complete.status == .success)
        #expect(complete.maximumPacketsPerMessage == 32 && complete.packetAlignmentFactor == 3)
        #expect(complete.deviceFlags == 1 && complete.medium == 0)

        func query(_ oid: RNDISObjectID, template: [UInt8] = [], _ guest: inout NetvscTestGuest)
            -> (RNDISStatus, [UInt8])?
        {
            let id = guest.requestID()
            guard case .queryComplete(let requestID, let status, let information)? = ask(
                .query(RNDISRequest(requestID: id, oid: oid, information: template)), &guest)
            else {
                Issue.record("no QUERY_C for \(oid.rawValue)")
                return nil
            }
            #expect(requestID == id)
            return (status, information)
        }
        #expect(query(.maximumFrameSize, &guest)?.1 == u32le(1500), "MTU 1500 (rndis_filter_device_add takes it as the MTU)")
        #expect(query(.permanentAddress, &guest)?.1 == mac.bytes)
        if let (status, name) = query(.friendlyName, &guest) {
            #expect(status == .success && name.count <= 512 && name.count % 2 == 0)
        }
        let templateSize = version >= .v5 ? 156 : version >= .v4 ? 144 : 112
        if let (status, caps) = query(.tcpOffloadHardwareCapabilities, template: [UInt8](repeating: 0, count: templateSize),
                                      &guest) {
            #expect(status == .success)
            #expect(caps.count == 156)
            let parsed = try? NDISOffload(parsing: caps)
            #expect(parsed?.revision == 3 && parsed?.headerSize == 156)
        }
        var parameters = NDISOffloadParameters()
        parameters.ipv4Checksum = 1
        parameters.tcpIPv4Checksum = 4
        parameters.largeSendV2IPv4 = 2
        parameters.encodedSize = version >= .v5 ? 28 : 22
        let setID = guest.requestID()
        #expect(ask(.set(RNDISRequest(requestID: setID, oid: .tcpOffloadParameters, information: parameters.bytes)),
                    &guest) == .setComplete(requestID: setID, status: .success))
        #expect(guest.vsp.offloadParameters.largeSendV2IPv4 == 2)
        #expect(query(.mediaConnectStatus, &guest)?.1 == u32le(0))
        if version >= .v5 {
            #expect(query(.linkSpeed, &guest)?.1 == u32le(100_000_000))
            let rss = query(.receiveScaleCapabilities, template: [0x88, 2, 18, 0] + [UInt8](repeating: 0, count: 14),
                            &guest)
            if guest.vsp.configuration.maximumSubchannels == 0 {
                #expect(rss?.0 == .notSupported && rss?.1 == [], "no RSS: one channel")
            } else {
                let caps = rss.flatMap { try? RSSCapabilities(parsing: $0.1) }
                #expect(caps?.receiveQueueCount == UInt32(guest.vsp.configuration.maximumSubchannels + 1))
            }
        }
        // ip link set up: the packet filter.
        let filterID = guest.requestID()
        let filterActions = guest.control(.set(RNDISRequest(requestID: filterID, oid: .currentPacketFilter,
                                                            information: u32le(0x0D))))
        #expect(filterActions.contains(.packetFilterChanged(.linuxDefault)))
        #expect(controlResponses(filterActions, guest: &guest) == [.setComplete(requestID: filterID, status: .success)])
        #expect(guest.vsp.packetFilter == .linuxDefault)
    }

    @Test("Linux's bring-up at every NVSP version it negotiates", arguments: NVSPVersion.linuxOrder)
    func bringUp(version: NVSPVersion) {
        var guest = NetvscTestGuest(configuration: Self.configuration(maximumVersion: version))
        guard let negotiated = Self.negotiate(&guest, expect: version) else { return }
        Self.rndisBringUp(&guest, version: negotiated)
        #expect(guest.vsp.isReadyForData)
        #expect(guest.vsp.counters.badNVSPMessages == 0 && guest.vsp.counters.badRNDISMessages == 0)
        #expect(guest.vsp.counters.unknownCompletions == 0)
    }

    @Test("vRSS: SUBCHANNEL is granted exactly what will be offered, then the indirection table and RSS sets (rndis_set_subchannel waits for exactly that many)")
    func subchannels() {
        var guest = NetvscTestGuest(configuration: Self.configuration(subchannels: 3), receivePageCount: 128)
        guard let version = Self.negotiate(&guest, expect: .v61) else { return }
        Self.rndisBringUp(&guest, version: version)
        // Linux asks for min(CPUs, queues) − 1; ask for more than granted.
        let actions = guest.inband(.subchannelRequest(operation: 1, count: 7))
        #expect(completions(actions).map(\.message) == [.subchannelComplete(status: .success, count: 3)])
        #expect(actions.contains(.offerSubchannels(count: 3)))
        let tables = actions.compactMap { action -> [UInt32]? in
            guard case .send(0, let packet) = action, packet.type == .inband,
                case .sendIndirectionTable(let entries)? = try? NVSPMessage(parsing: packet.payload) else { return nil }
            return entries
        }
        #expect(tables == [(0..<16).map { UInt32($0 % 4) }])
        #expect(guest.vsp.channelCount == 4)
        for channel in 1...3 { guest.vsp.channelOpened(channel) }
        // Each channel owns a quarter of the sub-allocations.
        let total = guest.vsp.receiveLayout?.count ?? 0
        for channel in 0...3 { #expect(guest.vsp.freeReceiveSlots(on: channel) >= total / 4 - 1) }
        // RSS parameters: first "disable", then the real table.
        for flags: UInt16 in [RSSParameters.flagDisable, 0] {
            let parameters = RSSParameters(flags: flags, hashInformation: 0x3301,
                                           indirectionTable: (0..<128).map { UInt32($0 % 4) },
                                           key: [UInt8](repeating: 1, count: 40))
            let id = guest.requestID()
            #expect(controlResponses(guest.control(.set(RNDISRequest(
                requestID: id, oid: .receiveScaleParameters, information: parameters.bytes))), guest: &guest)
                == [.setComplete(requestID: id, status: .success)])
        }
        #expect(guest.vsp.rssParameters?.flags == 0)
        // A second SUBCHANNEL request is refused.
        #expect(completions(guest.inband(.subchannelRequest(operation: 1, count: 2))).map(\.message)
                == [.subchannelComplete(status: .failure, count: 0)])
    }

    @Test("teardown and re-init: HALT (no reply), revokes (no completion), close, then the full init again (netvsc_change_mtu, netvsc_remove)")
    func reinitialize() {
        var guest = NetvscTestGuest(configuration: Self.configuration())
        guard let version = Self.negotiate(&guest, expect: .v61) else { return }
        Self.rndisBringUp(&guest, version: version)
        let halt = guest.control(.halt(requestID: guest.requestID()))
        #expect(receivedPackets(halt, guest: guest).isEmpty, "HALT is never answered")
        #expect(completions(halt).count == 1)
        #expect(guest.inband(.revokeReceiveBuffer(id: 0xCAFE), completion: false).isEmpty)
        #expect(guest.inband(.revokeSendBuffer(id: 0), completion: false).isEmpty)
        #expect(!guest.vsp.isUsing(gpadl: NetvscTestGuest.receiveGPADL))
        #expect(!guest.vsp.isUsing(gpadl: NetvscTestGuest.sendGPADL))
        guest.vsp.channelClosed(0)
        guest.vsp.channelOpened(0)
        #expect(guest.vsp.version == nil)
        guard let again = Self.negotiate(&guest, expect: .v61) else { return }
        Self.rndisBringUp(&guest, version: again)
        #expect(guest.vsp.isReadyForData)
    }

    @Test("the multicast list a guest sets reaches its port, and a new INITIALIZE empties it and the filter there too")
    func multicastListAndInitializeReachThePort() {
        var guest = NetvscTestGuest(configuration: Self.configuration())
        guard let version = Self.negotiate(&guest, expect: .v61) else { return }
        Self.rndisBringUp(&guest, version: version)
        let groups = [MACAddress(0x01, 0x00, 0x5E, 0, 0, 0xFB), MACAddress(0x33, 0x33, 0, 0, 0, 1)]
        let id = guest.requestID()
        let set = guest.control(.set(RNDISRequest(requestID: id, oid: .multicastList,
                                                  information: groups.flatMap(\.bytes))))
        #expect(set.contains(.multicastListChanged(groups)))
        #expect(controlResponses(set, guest: &guest) == [.setComplete(requestID: id, status: .success)])
        let again = guest.control(.initialize(requestID: guest.requestID(), majorVersion: 1, minorVersion: 0,
                                              maximumTransferSize: 0x4000))
        #expect(again.contains(.packetFilterChanged([])))
        #expect(again.contains(.multicastListChanged([])))
    }

    @Test("MAC change through NetworkAddress, and its refusal when the configuration forbids it")
    func macChange() {
        var guest = NetvscTestGuest(configuration: Self.configuration())
        guard let version = Self.negotiate(&guest, expect: .v61) else { return }
        Self.rndisBringUp(&guest, version: version)
        let newAddress = MACAddress(0x02, 0x00, 0x00, 0xAA, 0xBB, 0xCC)
        let id = guest.requestID()
        let actions = guest.control(.set(RNDISRequest(requestID: id, oid: .rndisConfigParameter,
                                                      information: RNDISConfigParameter.networkAddress(newAddress).bytes)))
        #expect(actions.contains(.macAddressChanged(newAddress)))
        #expect(controlResponses(actions, guest: &guest) == [.setComplete(requestID: id, status: .success)])
        #expect(guest.vsp.macAddress == newAddress)

        var strict = Self.configuration()
        strict.allowsMACAddressChange = false
        var other = NetvscTestGuest(configuration: strict)
        guard let otherVersion = Self.negotiate(&other, expect: .v61) else { return }
        Self.rndisBringUp(&other, version: otherVersion)
        let refusedID = other.requestID()
        #expect(controlResponses(other.control(.set(RNDISRequest(
            requestID: refusedID, oid: .rndisConfigParameter,
            information: RNDISConfigParameter.networkAddress(newAddress).bytes))), guest: &other)
            == [.setComplete(requestID: refusedID, status: .failure)])
    }

    @Test("KEEPALIVE and RESET are answered; unknown OIDs get NOT_SUPPORTED with an empty buffer at offset 16")
    func otherControl() {
        var guest = NetvscTestGuest(configuration: Self.configuration())
        guard let version = Self.negotiate(&guest, expect: .v61) else { return }
        Self.rndisBringUp(&guest, version: version)
        #expect(controlResponses(guest.control(.keepalive(requestID: 77)), guest: &guest)
                == [.keepaliveComplete(requestID: 77, status: .success)])
        #expect(controlResponses(guest.control(.reset), guest: &guest)
                == [.resetComplete(status: .success, addressingReset: 0)])
        let unsupportedBefore = guest.vsp.counters.unsupportedOIDs
        let actions = guest.control(.query(RNDISRequest(requestID: 78, oid: RNDISObjectID(rawValue: 0x0DEA_DBEE))))
        let raw = receivedPackets(actions, guest: guest).first?.messages.first ?? []
        #expect(raw == hexBytes("04000080 18000000 4e000000 bb0000c0 00000000 10000000"))
        #expect(guest.vsp.counters.unsupportedOIDs == unsupportedBefore + 1)
        // Statistics come from the counters: u64 when the guest's buffer has room, else u32.
        let frame = RNDISPacket(data: ethernetFrame(from: Self.mac, to: .broadcast)).bytes()
        _ = guest.gpaDirect(stream: frame, channelType: .data)
        _ = guest.gpaDirect(stream: frame, channelType: .data)
        #expect(controlResponses(guest.control(.query(RNDISRequest(requestID: 79, oid: .transmitOK,
                                                                   information: [UInt8](repeating: 0, count: 8)))),
                                 guest: &guest)
                == [.queryComplete(requestID: 79, status: .success, information: [2, 0, 0, 0, 0, 0, 0, 0])])
        #expect(controlResponses(guest.control(.query(RNDISRequest(requestID: 80, oid: .transmitOK))), guest: &guest)
                == [.queryComplete(requestID: 80, status: .success, information: u32le(2))])
    }
}
