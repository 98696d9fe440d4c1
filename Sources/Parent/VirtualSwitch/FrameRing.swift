/// A first-in, first-out queue kept in a ring that grows (by doubling) to what it has held:
/// taking from the front moves nothing and copies nothing, where an array would shift what is
/// left or keep a growing dead prefix. A switch port's queue (`SwitchCore`), and a NIC's queued
/// control responses (`NetworkVSP`).
package struct FrameRing<Element> {
    /// A power of two long (or empty), so a position wraps with a mask.
    private var slots: [Element?] = []
    private var head = 0
    package private(set) var count = 0

    package init() {}

    package var isEmpty: Bool { count == 0 }

    /// The front element, if any (a copy).
    package var first: Element? { count > 0 ? slots[head] : nil }

    /// Adds `element` at the back.
    package mutating func append(_ element: consuming Element) {
        if count == slots.count { grow() }
        slots[(head + count) & (slots.count - 1)] = element
        count += 1
    }

    /// Adds `element` at the front.
    package mutating func prepend(_ element: consuming Element) {
        if count == slots.count { grow() }
        head = (head - 1) & (slots.count - 1)
        slots[head] = element
        count += 1
    }

    /// Takes the front element out (moved, not copied), or `nil` when empty.
    package mutating func removeFirst() -> Element? {
        guard count > 0 else { return nil }
        var element: Element? = nil
        swap(&element, &slots[head])
        head = (head + 1) & (slots.count - 1)
        count -= 1
        return element
    }

    private mutating func grow() {
        var larger = [Element?](repeating: nil, count: max(16, slots.count * 2))
        for offset in 0..<count { swap(&larger[offset], &slots[(head + offset) & (slots.count - 1)]) }
        slots = larger
        head = 0
    }
}

extension FrameRing: Sendable where Element: Sendable {}
