import LinuxSupport
import Synchronization
import Testing
import VMBusHost

/// The leases that keep a device off a buffer's pages once the guest tears its GPADL down
/// (Docs/vmbus.md, "GPADLs beyond the rings").
@Suite("GPADL registry: leases and teardown")
struct GPADLRegistryTests {
    static func registry() -> GPADLRegistry {
        let registry = GPADLRegistry()
        registry.publish(handle: 10, channel: 1, byteOffset: 0, byteCount: 8192, pageNumbers: [100, 101])
        registry.publish(handle: 11, channel: 1, byteOffset: 0, byteCount: 4096, pageNumbers: [200])
        registry.publish(handle: 12, channel: 2, byteOffset: 0, byteCount: 4096, pageNumbers: [101])
        return registry
    }

    @Test func aViewShowsOnlyItsChannelsGPADLs() throws {
        let registry = Self.registry()
        let view = registry.view(channel: 1)
        #expect(view.gpadl(10)?.pageNumbers == [100, 101])
        #expect(view.gpadl(11) != nil)
        #expect(view.gpadl(12) == nil, "channel 2's GPADL is not channel 1's to use")
        #expect(view.gpadl(99) == nil)
        let serial = try #require(view.gpadl(10)?.serial)
        #expect(registry.view(channel: 2).acquire([GPADLLeaseRequest(handle: 10, serial: serial)]).isEmpty)
    }

    @Test func overlappingPagesAreReported() {
        let registry = Self.registry()
        #expect(registry.view(channel: 1).overlapsOthers(10), "page 101 is also GPADL 12's")
        #expect(!registry.view(channel: 1).overlapsOthers(11))
    }

    @Test func aRevokeWaitsForTheHolderAndRefusesNewLeases() throws {
        let registry = Self.registry()
        let view = registry.view(channel: 1)
        let gpadl = try #require(view.gpadl(10))
        let held = view.acquire([GPADLLeaseRequest(handle: 10, serial: gpadl.serial)])
        #expect(held.count == 1)
        let revoked = Atomic<Bool>(false)
        let revoker = try OSThread.spawn(name: "revoke") {
            _ = registry.revoke(handle: 10)
            revoked.store(true, ordering: .releasing)
        }
        // Once the teardown has started (the revoker may start late on a loaded machine)...
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while view.gpadl(10) != nil && MonotonicClock.nanoseconds() < deadline { MonotonicClock.sleep(.milliseconds(1)) }
        #expect(view.gpadl(10) == nil, "no new lookup once the teardown started")
        // ... it waits while a device holds the buffer.
        MonotonicClock.sleep(.milliseconds(100))
        let early = revoked.load(ordering: .acquiring)
        #expect(!early, "the teardown waits while a device holds the buffer")
        #expect(view.acquire([GPADLLeaseRequest(handle: 10, serial: gpadl.serial)]).isEmpty, "nor a new lease")
        view.release(held)
        revoker.join()
        let done = revoked.load(ordering: .acquiring)
        #expect(done)
        #expect(registry.count == 2)
    }

    @Test func acquireAllLeasesEveryBufferOrNone() throws {
        let registry = Self.registry()
        let view = registry.view(channel: 1)
        let ten = try #require(view.gpadl(10))
        let eleven = try #require(view.gpadl(11))
        let both = [GPADLLeaseRequest(handle: 10, serial: ten.serial), GPADLLeaseRequest(handle: 11, serial: eleven.serial)]
        #expect(view.acquireAll(both))
        view.release(both)
        #expect(registry.revoke(handle: 11, timeoutNanoseconds: 1_000_000), "the lease on 11 was given back")
        #expect(!view.acquireAll(both), "11 is gone: no lease is taken")
        #expect(registry.revoke(handle: 10, timeoutNanoseconds: 1_000_000), "not even on 10, which is still live")
        #expect(view.acquireAll([]), "nothing wanted, nothing to refuse")
        #expect(!registry.view(channel: 2).acquireAll([GPADLLeaseRequest(handle: 12, serial: ten.serial)]),
                "a serial of another GPADL does not lease this one")
    }

    @Test func aHolderThatNeverLeavesIsGivenUpOnAtTheDeadline() throws {
        let registry = Self.registry()
        let view = registry.view(channel: 1)
        let gpadl = try #require(view.gpadl(11))
        let held = view.acquire([GPADLLeaseRequest(handle: 11, serial: gpadl.serial)])
        #expect(!registry.revoke(handle: 11, timeoutNanoseconds: 50_000_000))
        #expect(view.gpadl(11) == nil)
        view.release(held)  // late: finds nothing, changes nothing
        #expect(registry.count == 2)
    }

    @Test func aReusedHandleIsANewGPADL() throws {
        let registry = Self.registry()
        let view = registry.view(channel: 1)
        let old = try #require(view.gpadl(11))
        #expect(registry.revoke(handle: 11))
        registry.publish(handle: 11, channel: 1, byteOffset: 0, byteCount: 4096, pageNumbers: [300])
        let new = try #require(view.gpadl(11))
        #expect(new.serial != old.serial)
        #expect(view.acquire([GPADLLeaseRequest(handle: 11, serial: old.serial)]).isEmpty,
                "a lease for the old buffer does not reach the new one's pages")
        view.withLeases([GPADLLeaseRequest(handle: 11, serial: new.serial)]) { held in #expect(held == [11]) }
        #expect(registry.revoke(handle: 11, timeoutNanoseconds: 1_000_000), "withLeases gave its lease back")
    }

    @Test func theTableIsBounded() {
        let registry = GPADLRegistry()
        for handle in 0..<UInt32(GPADLRegistry.maximumEntries) {
            #expect(registry.publish(handle: handle, channel: 1, byteOffset: 0, byteCount: 4096, pageNumbers: [UInt64(handle)]))
        }
        #expect(!registry.publish(handle: 99_999, channel: 1, byteOffset: 0, byteCount: 4096, pageNumbers: [1]))
        #expect(registry.publish(handle: 5, channel: 1, byteOffset: 0, byteCount: 4096, pageNumbers: [5]), "replacing is fine")
        registry.revokeAll()
        #expect(registry.count == 0)
    }
}
