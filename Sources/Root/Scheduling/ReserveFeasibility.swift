/// Whether every partition's reserve can be met at once, given the processors each may run on.
///
/// With no pinning this is just Σ reserve_i × VPs_i ≤ 100 × processors. With pinning it is
/// Hall's condition for a fractional assignment: for every set S of partitions, the reserves in
/// S must fit on the processors S may use together. That is checked as a maximum flow
/// (source → partition, capacity its reserve; partition → processor it may use; processor →
/// sink, capacity 100 hundredths): every reserve can be met exactly when the flow saturates the
/// partitions. When it does not, the partitions still reachable from the source in the residual
/// graph form a set whose reserves exceed its processors, which the refusal names.
enum ReserveFeasibility {
    struct Demand {
        var reservedHundredths: Int
        var processors: [Int]
    }

    struct Shortfall: Equatable {
        /// Indices into the demands.
        var demands: [Int]
        var neededHundredths: Int
        var processors: [Int]
    }

    /// Nil when every reserve can be met; otherwise a set of demands that cannot all be.
    static func shortfall(_ demands: [Demand]) -> Shortfall? {
        let reserving = demands.indices.filter { demands[$0].reservedHundredths > 0 }
        guard !reserving.isEmpty else { return nil }

        // Processors used by exactly the same reserving partitions are interchangeable: one
        // node per such class keeps the network small however many processors the host has.
        var classOf: [[Int]: Int] = [:]
        var classes: [[Int]] = []          // processors of each class
        var users: [Int: [Int]] = [:]      // processor -> positions in `reserving`
        for (position, index) in reserving.enumerated() {
            for processor in Set(demands[index].processors) { users[processor, default: []].append(position) }
        }
        for processor in users.keys.sorted() {
            let signature = users[processor] ?? []
            if let existing = classOf[signature] {
                classes[existing].append(processor)
            } else {
                classOf[signature] = classes.count
                classes.append([processor])
            }
        }

        var network = FlowNetwork(nodeCount: 2 + reserving.count + classes.count)
        let source = 0
        let sink = 1
        let partitionNode = { (position: Int) in 2 + position }
        let classNode = { (index: Int) in 2 + reserving.count + index }
        for (position, index) in reserving.enumerated() {
            network.addEdge(from: source, to: partitionNode(position), capacity: demands[index].reservedHundredths)
        }
        for (signature, index) in classOf {
            for position in signature {
                network.addEdge(from: partitionNode(position), to: classNode(index), capacity: FlowNetwork.unbounded)
            }
        }
        for (index, processors) in classes.enumerated() {
            network.addEdge(from: classNode(index), to: sink, capacity: 100 * processors.count)
        }

        let needed = reserving.reduce(0) { $0 + demands[$1].reservedHundredths }
        guard network.maximumFlow(from: source, to: sink) < needed else { return nil }

        let reachable = network.residualReachable(from: source)
        let short = reserving.indices.filter { reachable[partitionNode($0)] }.map { reserving[$0] }
        let processors = classes.indices.filter { reachable[classNode($0)] }.flatMap { classes[$0] }.sorted()
        return Shortfall(
            demands: short,
            neededHundredths: short.reduce(0) { $0 + demands[$1].reservedHundredths },
            processors: processors)
    }
}

/// A small integer flow network (Edmonds–Karp: shortest augmenting paths by breadth-first search).
struct FlowNetwork {
    static let unbounded = Int.max / 4

    private struct Edge {
        var to: Int
        var capacity: Int
        var reverse: Int
    }

    private var edges: [[Edge]]

    init(nodeCount: Int) {
        edges = Array(repeating: [], count: nodeCount)
    }

    mutating func addEdge(from: Int, to: Int, capacity: Int) {
        edges[from].append(Edge(to: to, capacity: capacity, reverse: edges[to].count))
        edges[to].append(Edge(to: from, capacity: 0, reverse: edges[from].count - 1))
    }

    mutating func maximumFlow(from source: Int, to sink: Int) -> Int {
        var total = 0
        while true {
            // Breadth-first search for the shortest path with residual capacity.
            var via: [(node: Int, edge: Int)?] = Array(repeating: nil, count: edges.count)
            var queue = [source]
            var head = 0
            var seen = Array(repeating: false, count: edges.count)
            seen[source] = true
            while head < queue.count, !seen[sink] {
                let node = queue[head]
                head += 1
                for (index, edge) in edges[node].enumerated() where edge.capacity > 0 && !seen[edge.to] {
                    seen[edge.to] = true
                    via[edge.to] = (node, index)
                    queue.append(edge.to)
                }
            }
            guard seen[sink] else { return total }
            var bottleneck = FlowNetwork.unbounded
            var node = sink
            while let step = via[node] {
                bottleneck = min(bottleneck, edges[step.node][step.edge].capacity)
                node = step.node
            }
            node = sink
            while let step = via[node] {
                edges[step.node][step.edge].capacity -= bottleneck
                let reverse = edges[step.node][step.edge].reverse
                edges[node][reverse].capacity += bottleneck
                node = step.node
            }
            total += bottleneck
        }
    }

    /// Nodes reachable from `source` through edges with residual capacity.
    func residualReachable(from source: Int) -> [Bool] {
        var seen = Array(repeating: false, count: edges.count)
        var stack = [source]
        seen[source] = true
        while let node = stack.popLast() {
            for edge in edges[node] where edge.capacity > 0 && !seen[edge.to] {
                seen[edge.to] = true
                stack.append(edge.to)
            }
        }
        return seen
    }
}
