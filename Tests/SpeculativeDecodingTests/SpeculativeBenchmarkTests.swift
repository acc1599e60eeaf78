import XCTest
@testable import SpeculativeDecoding

/// The race's speedup pairs each round of a method with `none`'s round from the same minutes.
final class SpeculativeBenchmarkTests: XCTestCase {
    func testTheSpeedupIsTheMedianOfPerRoundRatiosNotTheRatioOfMedians() {
        // The machine got faster in round 2 for both: per round the method is 2×, 1×, 2× as fast as none.
        let none: [Double] = [100, 400, 300]
        let method: [Double] = [200, 400, 600]
        XCTAssertEqual(SpeculativeBenchmark.pairedSpeedup(method, over: none), 2)
        XCTAssertEqual(SpeculativeBenchmark.median(method) / SpeculativeBenchmark.median(none), 400.0 / 300.0,
                       "the unpaired figure this replaces")
    }

    func testOneRoundIsItsOwnRatio() {
        XCTAssertEqual(SpeculativeBenchmark.pairedSpeedup([300], over: [150]), 2)
    }
}
