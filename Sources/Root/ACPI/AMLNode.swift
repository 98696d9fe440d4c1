/// One object of a decoded AML namespace and the objects declared inside it.
public struct AMLNode: Equatable, Sendable {
    /// What the object is.
    public enum Kind: Equatable, Sendable {
        /// The namespace root, `\`.
        case root
        /// A `Scope`, or a name only known as a parent of other declarations (like `\_SB`).
        case scope
        case device
        case name(AMLValue)
        case method(AMLMethod)
    }

    /// The 4-character segment ("VMBS"); empty for the root.
    public var segment: String
    /// What this object is.
    public var kind: Kind
    /// Children in declaration order.
    public var children: [AMLNode]

    public init(segment: String, kind: Kind, children: [AMLNode] = []) {
        self.segment = segment
        self.kind = kind
        self.children = children
    }

    /// The direct child with `segment` (padded with `_` if shorter than 4 characters).
    public func child(_ segment: String) -> AMLNode? {
        guard let padded = AMLNameString.segment(Substring(segment)) else { return nil }
        return children.first { $0.segment == padded }
    }

    /// The node at `path`, relative to this one or, if `path` starts with `\`, to the root
    /// (only meaningful when called on the root). `nil` if there is none or the path is malformed.
    public func node(at path: String) -> AMLNode? {
        guard let name = try? AMLNameString(path), name.parentPrefixes == 0 else { return nil }
        var node = self
        for segment in name.segments {
            guard let next = node.children.first(where: { $0.segment == segment }) else { return nil }
            node = next
        }
        return node
    }

    /// A `Name`'s value, or the constant a `Method` returns; `nil` otherwise.
    public var value: AMLValue? {
        switch kind {
        case .name(let value): value
        case .method(let method): method.constantReturnValue
        default: nil
        }
    }

    /// The value at `path` (see `node(at:)` and `value`).
    public func value(at path: String) -> AMLValue? {
        node(at: path)?.value
    }

    /// Declares `kind` at `path` below this node, creating missing parents as scopes. A scope
    /// declaration leaves an existing object alone; anything else replaces the kind.
    mutating func declare(_ path: ArraySlice<String>, kind: Kind) {
        guard let first = path.first else {
            if kind != .scope { self.kind = kind }
            return
        }
        if let index = children.firstIndex(where: { $0.segment == first }) {
            children[index].declare(path.dropFirst(), kind: kind)
        } else {
            var child = AMLNode(segment: first, kind: .scope)
            child.declare(path.dropFirst(), kind: kind)
            children.append(child)
        }
    }
}
