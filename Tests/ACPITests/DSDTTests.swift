import HyperV
import Testing
@testable import ACPI

@Suite("DSDT namespace (Docs/hyperv-interface.md §13.4)")
struct DSDTTests {
    let root: AMLNode

    init() throws {
        let blob = try ACPITables.build(processorCount: 2, baseAddress: 0xE_0000)
        let table = try #require(blob.table("DSDT"))
        #expect(table[table.startIndex + 8] == 2, "revision 2: 64-bit integers")
        root = try AMLDecoder.decode(table: Array(table))
    }

    @Test func vmodIsAnACPI0004ModuleDeviceUnderSB() throws {
        let vmod = try #require(root.node(at: "\\_SB.VMOD"))
        #expect(vmod.kind == .device)
        #expect(vmod.value(at: "_HID") == .string("ACPI0004"))
        #expect(vmod.value(at: "_UID") == .integer(0))
        let crs = try #require(vmod.value(at: "_CRS")?.buffer)
        #expect(try ResourceTemplate.decode(crs) == [])
    }

    @Test func vmbsHasTheExactStringHIDVMBusThatHvVmbusMatches() throws {
        let vmbs = try #require(root.node(at: "\\_SB.VMOD.VMBS"))
        #expect(vmbs.kind == .device)
        #expect(vmbs.value(at: "_HID") == .string("VMBus"))
        #expect(vmbs.value(at: "_DDN") == .string("VMBUS"))
        #expect(vmbs.value(at: "_UID") == .integer(0))
    }

    @Test func vmbsStatusMethodReturns0x0F() throws {
        let status = try #require(root.node(at: "\\_SB.VMOD.VMBS._STA"))
        guard case .method(let method) = status.kind else {
            Issue.record("_STA is not a method")
            return
        }
        #expect(method.argumentCount == 0)
        #expect(method.constantReturnValue == .integer(0x0F))
    }

    @Test func vmbsResourcesAreOnlyAnEndTagWithNoIRQ() throws {
        let crs = try #require(root.value(at: "\\_SB.VMOD.VMBS._CRS")?.buffer)
        #expect(crs.count == 2)
        #expect(crs[0] == 0x79)
        #expect(crs.reduce(0, &+) == 0)
        #expect(try ResourceTemplate.decode(crs).isEmpty)
    }

    @Test func s5PackageIsSleepType5ToMatchThePowerOffCommand() throws {
        #expect(root.value(at: "\\_S5") == .package([.integer(5), .integer(0), .integer(0), .integer(0)]))
        #expect(UInt8(5 << 2 | 1 << 5) == PowerCommand.powerOff)
    }

    @Test func com1IsAPNP0501UARTAt0x3F8WithIRQ4() throws {
        let com1 = try #require(root.node(at: "\\_SB.COM1"))
        #expect(com1.kind == .device)
        #expect(com1.value(at: "_HID") == .integer(0x0105_D041))
        #expect(com1.value(at: "_HID")?.hardwareID == "PNP0501")
        #expect(com1.value(at: "_UID") == .integer(1))
        let crs = try #require(com1.value(at: "_CRS")?.buffer)
        #expect(try ResourceTemplate.decode(crs) == [
            .io(.init(decodes16Bits: true, minimum: 0x3F8, maximum: 0x3F8, alignment: 1, length: 8)),
            .irq(mask: 1 << 4),
        ])
    }

    @Test func sbHoldsExactlyTheTwoDevices() throws {
        let sb = try #require(root.child("_SB"))
        #expect(sb.children.map(\.segment) == ["VMOD", "COM1"])
        #expect(root.children.map(\.segment) == ["_SB_", "_S5_"])
    }
}
