import Foundation
import XCTest
@testable import InferenceServer

final class JSONValueTests: XCTestCase {
    func testValuesParseWithExactIntegersApartFromOtherNumbers() throws {
        let v = try JSONValue.parse(#"{"a": [1, -2, 1.5, 1e3, 9223372036854775807, 18446744073709551616], "b": true, "c": null, "d": "x\u00e9\ud83d\ude00\n"}"#)
        XCTAssertEqual(v, .object([
            "a": .array([.integer(1), .integer(-2), .number(1.5), .number(1000), .integer(Int64.max), .number(18446744073709551616)]),
            "b": .bool(true), "c": .null, "d": .string("xé😀\n"),
        ]))
    }

    func testMalformedDocumentsAreRefusedWithAPosition() {
        let cases: [(String, String)] = [
            ("", "unexpected end of the document"),
            ("{\"a\": 1,}", "expected a key in quotes"),
            ("[1 2]", "expected ',' or ']'"),
            ("{\"a\": 1, \"a\": 2}", "duplicate key \"a\""),
            ("01", "a number cannot start with 0"),
            ("\"\\ud800\"", "unpaired surrogate in a \\u escape"),
            ("\"\u{01}\"", "control character in a string"),
            ("{} x", "unexpected text after the document"),
            ("tru", "invalid literal (expected true)"),
            ("\"\\u00g0\"", "expected four hex digits after \\u"),
        ]
        for (text, reason) in cases {
            XCTAssertThrowsError(try JSONValue.parse(text), text) { XCTAssertEqual(($0 as? JSONSyntaxError)?.reason, reason, text) }
        }
        XCTAssertThrowsError(try JSONValue.parse([0x22, 0xFF, 0x22])) { XCTAssertEqual(($0 as? JSONSyntaxError)?.reason, "a string is not valid UTF-8") }
    }

    func testNestingIsBoundedSoAHostileBodyCannotExhaustTheStack() {
        let deep = String(repeating: "[", count: 100_000)
        XCTAssertThrowsError(try JSONValue.parse(deep)) { XCTAssertEqual(($0 as? JSONSyntaxError)?.reason, "nested deeper than 64 levels") }
        XCTAssertNoThrow(try JSONValue.parse(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)))
    }
}
