// What speculation did for one request, and summed over requests for the server's counters (DESIGN §5, §6).

public struct SpeculationStats: Sendable, Equatable, Codable {
    public var method: SpeculativeMethod = .none
    /// False when a lossy acceptance rule (Medusa typical acceptance) decided any token.
    public var lossless = true
    /// Verification steps that carried at least one draft token.
    public var steps = 0
    /// Draft tokens offered for acceptance: per step, the depth of the tree (the chain length for chains).
    public var drafted = 0
    /// Draft tree nodes verified (equal to `drafted` for chains).
    public var verifiedNodes = 0
    public var accepted = 0
    /// `acceptedPerPosition[i]`: steps whose accepted path reached depth i + 1.
    public var acceptedPerPosition: [Int] = []
    /// `draftedPerPosition[i]`: steps whose draft reached depth i + 1.
    public var draftedPerPosition: [Int] = []
    public var draftSeconds = 0.0
    public var verifySeconds = 0.0
    /// Steps decoded without a draft (speculation off, or nothing to propose).
    public var plainSteps = 0
    /// Set when the request switched speculation off because it did not pay (at least once).
    public var autoDisabled = false
    /// Times speculation was tried again after a pause.
    public var retries = 0

    public init(method: SpeculativeMethod = .none) { self.method = method }

    public var acceptanceRate: Double { drafted > 0 ? Double(accepted) / Double(drafted) : 0 }
    /// Tokens per speculative step: 1 + accepted / steps.
    public var meanAcceptanceLength: Double { steps > 0 ? 1 + Double(accepted) / Double(steps) : 1 }
    /// Acceptance rate at each draft position: steps accepted that deep / steps that drafted that deep.
    public var acceptancePerPosition: [Double] {
        zip(acceptedPerPosition, draftedPerPosition).map { $1 > 0 ? Double($0) / Double($1) : 0 }
    }

    mutating func record(depth: Int, nodes: Int, acceptedCount: Int) {
        steps += 1
        drafted += depth
        verifiedNodes += nodes
        accepted += acceptedCount
        grow(&acceptedPerPosition, to: depth)
        grow(&draftedPerPosition, to: depth)
        for i in 0..<depth { draftedPerPosition[i] += 1 }
        for i in 0..<acceptedCount { acceptedPerPosition[i] += 1 }
    }

    /// Adds another request's figures (server totals).
    public mutating func add(_ other: SpeculationStats) {
        lossless = lossless && other.lossless
        steps += other.steps
        drafted += other.drafted
        verifiedNodes += other.verifiedNodes
        accepted += other.accepted
        grow(&acceptedPerPosition, to: other.acceptedPerPosition.count)
        grow(&draftedPerPosition, to: other.draftedPerPosition.count)
        for (i, v) in other.acceptedPerPosition.enumerated() { acceptedPerPosition[i] += v }
        for (i, v) in other.draftedPerPosition.enumerated() { draftedPerPosition[i] += v }
        draftSeconds += other.draftSeconds
        verifySeconds += other.verifySeconds
        plainSteps += other.plainSteps
        retries += other.retries
    }
}

private func grow(_ counts: inout [Int], to n: Int) {
    if counts.count < n { counts += Array(repeating: 0, count: n - counts.count) }
}
