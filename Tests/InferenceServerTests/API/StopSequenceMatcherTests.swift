import XCTest
@testable import InferenceServer

final class StopSequenceMatcherTests: XCTestCase {
    /// Feeds `pieces` and returns what was released after each, then the flush.
    private func run(_ stops: [String], _ pieces: [String]) -> (released: [String], flushed: String, matched: Bool) {
        var m = StopSequenceMatcher(stops)
        let released = pieces.map { m.push($0) }
        let matched = m.matched
        return (released, m.flush(), matched)
    }

    func testTextThatCannotStartAStopIsReleasedAtOnce() {
        let r = run(["END"], ["hello ", "world"])
        XCTAssertEqual(r.released, ["hello ", "world"])
        XCTAssertEqual(r.flushed, "")
        XCTAssertFalse(r.matched)
    }

    func testAPossibleStartIsHeldBackUntilDecided() {
        // "E" and "EN" could begin "END": held; "X" decides it was not.
        let r = run(["END"], ["abcE", "N", "X"])
        XCTAssertEqual(r.released, ["abc", "", "ENX"])
        XCTAssertFalse(r.matched)
    }

    func testAStopSplitAcrossPiecesIsCutAndNeverShown() {
        let r = run(["END"], ["abcE", "N", "D and more", "ignored"])
        XCTAssertEqual(r.released, ["abc", "", "", ""])
        XCTAssertTrue(r.matched)
        XCTAssertEqual(r.flushed, "")
    }

    func testTheEarliestOfSeveralStopsWins() {
        let r = run(["cd", "b"], ["abcd"])
        XCTAssertEqual(r.released, ["a"])
        XCTAssertTrue(r.matched)
        XCTAssertEqual(run(["bcd", "c"], ["abcd"]).released, ["a"])
    }

    func testHeldTextComesOutWhenTheGenerationEnds() {
        let r = run(["\n\n"], ["x\n"])
        XCTAssertEqual(r.released, ["x"])
        XCTAssertEqual(r.flushed, "\n")
    }

    func testTheLongestPossiblePrefixIsHeldSoAStopInsideARepeatIsFound() {
        // "aab": after "aa" the tail "aa" is not a prefix but "a" is; the stop is then found across pieces.
        let r = run(["aab"], ["xaa", "a", "b!"])
        XCTAssertEqual(r.released.joined(), "xa")
        XCTAssertTrue(r.matched)
    }

    func testWorksOnScalarsSoMultiByteCharactersAreNeverSplit() {
        let r = run(["é!"], ["caf", "é", "!"])
        XCTAssertEqual(r.released, ["caf", "", ""])
        XCTAssertTrue(r.matched)
        let emoji = run(["🙂🙂"], ["a🙂", "b"])
        XCTAssertEqual(emoji.released, ["a", "🙂b"])
    }

    func testNoStopsReleasesEverything() {
        XCTAssertEqual(run([], ["a", "b"]).released, ["a", "b"])
    }

    /// Whatever the piece boundaries, the released text is the text up to the first stop (or all of it).
    func testReleasedTextDoesNotDependOnHowTheTextIsSplit() {
        let text = "def f(x):\n    return x\n\ndef g():\n"
        let stops = ["\n\ndef", "return y"]
        let expected = "def f(x):\n    return x"
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var pieces: [String] = []
            var rest = Substring(text)
            while !rest.isEmpty {
                let n = Int.random(in: 1...4, using: &rng)
                pieces.append(String(rest.prefix(n)))
                rest = rest.dropFirst(n)
            }
            var m = StopSequenceMatcher(stops)
            var out = ""
            for p in pieces {
                out += m.push(p)
                // Never more than the text before the stop: no partial stop string is ever released.
                XCTAssertTrue(expected.hasPrefix(out), "leaked \(out.debugDescription) from \(pieces)")
            }
            out += m.flush()
            XCTAssertEqual(out, expected, "\(pieces)")
        }
    }
}
