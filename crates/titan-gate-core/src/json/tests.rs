//! Unit tests of the strict parser and the canonical writer.

#![allow(clippy::float_cmp, reason = "parsing must return exactly the nearest double")]

use std::borrow::Cow;
use std::cmp::Ordering;

use super::canonical::compare_utf16;
use super::{DEFAULT_MAX_DEPTH, JsonError, JsonErrorKind, Value, parse, parse_with_max_depth, to_canonical_string};

fn parse_error(text: &str) -> JsonError {
    match parse(text.as_bytes()) {
        Ok(value) => panic!("expected {text:?} to be rejected, parsed {value:?}"),
        Err(error) => error,
    }
}

fn assert_rejected(text: &str, kind: &JsonErrorKind, offset: usize) {
    let error = parse_error(text);
    assert_eq!(&error.kind, kind, "kind for {text:?}");
    assert_eq!(error.offset, offset, "offset for {text:?}");
}

fn canonical(text: &str) -> String {
    match parse(text.as_bytes()) {
        Ok(value) => to_canonical_string(&value),
        Err(error) => panic!("expected {text:?} to parse, got {error}"),
    }
}

fn number(text: &str) -> f64 {
    match parse(text.as_bytes()) {
        Ok(Value::Number(number)) => number,
        other => panic!("expected {text:?} to parse as a number, got {other:?}"),
    }
}

#[test]
fn scalars_parse_at_top_level() {
    assert_eq!(parse(b"null"), Ok(Value::Null));
    assert_eq!(parse(b"true"), Ok(Value::Bool(true)));
    assert_eq!(parse(b" false\n"), Ok(Value::Bool(false)));
    assert_eq!(parse(b"\"x\""), Ok(Value::String(Cow::Borrowed("x"))));
    assert_eq!(parse(b"\t\r\n 12 "), Ok(Value::Number(12.0)));
}

#[test]
fn invalid_utf8_reports_first_bad_byte() {
    assert_rejected_bytes(b"{\"a\":\"\xff\"}", &JsonErrorKind::InvalidUtf8, 6);
    assert_rejected_bytes(b"\"\xed\xa0\x80\"", &JsonErrorKind::InvalidUtf8, 1);
    assert_rejected_bytes(b"\"\xe2\x82\"", &JsonErrorKind::InvalidUtf8, 1);
}

fn assert_rejected_bytes(input: &[u8], kind: &JsonErrorKind, offset: usize) {
    let error = parse(input).expect_err("input must be rejected");
    assert_eq!(&error.kind, kind, "kind for {input:?}");
    assert_eq!(error.offset, offset, "offset for {input:?}");
}

#[test]
fn unexpected_end_is_reported_at_input_length() {
    for text in [
        "",
        " ",
        "{",
        "[",
        "[1",
        "[1,",
        "{\"a\"",
        "{\"a\":",
        "{\"a\":1",
        "{\"a\":1,",
        "\"abc",
        "\"a\\",
        "\"\\u12",
        "\"\\uD83D",
        "\"\\uD83D\\",
        "tru",
        "-",
        "1.",
        "1e",
        "1e+",
    ] {
        assert_rejected(text, &JsonErrorKind::UnexpectedEnd, text.len());
    }
}

#[test]
fn unexpected_character_cases() {
    assert_rejected("\u{feff}{}", &JsonErrorKind::UnexpectedCharacter, 0);
    assert_rejected("[1,]", &JsonErrorKind::UnexpectedCharacter, 3);
    assert_rejected("{\"a\":1,}", &JsonErrorKind::UnexpectedCharacter, 7);
    assert_rejected("{'a':1}", &JsonErrorKind::UnexpectedCharacter, 1);
    assert_rejected("{a:1}", &JsonErrorKind::UnexpectedCharacter, 1);
    assert_rejected("{\"a\" 1}", &JsonErrorKind::UnexpectedCharacter, 5);
    assert_rejected("[1 2]", &JsonErrorKind::UnexpectedCharacter, 3);
    assert_rejected("{\"a\":1]", &JsonErrorKind::UnexpectedCharacter, 6);
    assert_rejected("[1}", &JsonErrorKind::UnexpectedCharacter, 2);
    assert_rejected("trUe", &JsonErrorKind::UnexpectedCharacter, 2);
    assert_rejected("NaN", &JsonErrorKind::UnexpectedCharacter, 0);
    assert_rejected("+1", &JsonErrorKind::UnexpectedCharacter, 0);
    assert_rejected(".5", &JsonErrorKind::UnexpectedCharacter, 0);
}

#[test]
fn whitespace_outside_json_set_is_rejected() {
    for text in ["\u{c}1", "\u{b}1", "\u{a0}1", "\u{2028}1", "[1,\u{3000}2]"] {
        assert_eq!(parse_error(text).kind, JsonErrorKind::UnexpectedCharacter, "{text:?}");
    }
}

#[test]
fn trailing_characters_after_value() {
    assert_rejected("{} {}", &JsonErrorKind::TrailingCharacters, 3);
    assert_rejected("1 2", &JsonErrorKind::TrailingCharacters, 2);
    assert_rejected("truex", &JsonErrorKind::TrailingCharacters, 4);
    assert_rejected("\"a\"\"b\"", &JsonErrorKind::TrailingCharacters, 3);
    assert_rejected("{}\u{0}", &JsonErrorKind::TrailingCharacters, 2);
}

#[test]
fn number_grammar_rejects_non_json_forms() {
    assert_rejected("01", &JsonErrorKind::InvalidNumber, 1);
    assert_rejected("-01", &JsonErrorKind::InvalidNumber, 2);
    assert_rejected("-a", &JsonErrorKind::InvalidNumber, 1);
    assert_rejected("1.e5", &JsonErrorKind::InvalidNumber, 2);
    assert_rejected("1e+x", &JsonErrorKind::InvalidNumber, 3);
    assert_rejected("[1.]", &JsonErrorKind::InvalidNumber, 3);
    assert_rejected("-Infinity", &JsonErrorKind::InvalidNumber, 1);
    assert_rejected("0x10", &JsonErrorKind::TrailingCharacters, 1);
}

#[test]
fn numbers_round_like_javascript() {
    assert_eq!(number("0.1"), 0.1);
    assert_eq!(number("2.5E+3"), 2500.0);
    assert_eq!(number("5e-06"), 0.000_005);
    assert_eq!(number("9007199254740993"), 9_007_199_254_740_992.0);
    assert_eq!(number("123456789012345"), 123_456_789_012_345.0);
    assert_eq!(number("1.7976931348623157e308"), f64::MAX);
    assert_eq!(number("5e-324"), 5e-324);
    assert_eq!(number("1e-400"), 0.0);
}

#[test]
fn negative_zero_is_kept_and_printed_as_zero() {
    for text in ["-0", "-0.0", "-0e5", "-1e-400"] {
        let value = number(text);
        assert_eq!(value, 0.0, "{text}");
        assert!(value.is_sign_negative(), "{text} must keep its sign");
        assert_eq!(canonical(text), "0", "{text}");
    }
}

#[test]
fn number_overflowing_to_infinity_is_rejected() {
    assert_rejected("1e400", &JsonErrorKind::NumberOutOfRange, 0);
    assert_rejected("[-1e400]", &JsonErrorKind::NumberOutOfRange, 1);
    assert_rejected("1.8e308", &JsonErrorKind::NumberOutOfRange, 0);
    let digits = format!("1{}", "0".repeat(309));
    assert_rejected(&digits, &JsonErrorKind::NumberOutOfRange, 0);
}

#[test]
fn canonical_numbers_match_ecmascript() {
    let cases = [
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("1e-7", "1e-7"),
        ("0.000001", "0.000001"),
        ("12345678901234567891", "12345678901234567000"),
        ("1.0", "1"),
        ("2.5E+3", "2500"),
        ("0.38771252914452203", "0.38771252914452203"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("5e-324", "5e-324"),
        ("-1.5e-10", "-1.5e-10"),
        ("123e-2", "1.23"),
    ];
    for (text, expected) in cases {
        assert_eq!(canonical(text), expected, "{text}");
    }
}

#[test]
fn strings_without_escapes_borrow_input() {
    let input = br#"{"key":"value"}"#;
    let value = parse(input).expect("valid object");
    let members = value.as_object().expect("an object");
    assert!(matches!(members[0].0, Cow::Borrowed("key")));
    assert!(matches!(members[0].1, Value::String(Cow::Borrowed("value"))));
}

#[test]
fn escapes_decode_to_characters() {
    let value = parse(br#""\"\\\/\b\f\n\r\t\u0041\u00e9\u00E9\u2603""#).expect("valid string");
    assert_eq!(value.as_str(), Some("\"\\/\u{8}\u{c}\n\r\tA\u{e9}\u{e9}\u{2603}"));
    assert!(matches!(value, Value::String(Cow::Owned(_))));
}

#[test]
fn surrogate_pair_combines_into_one_character() {
    let value = parse(br#""a\uD83D\uDE00b\ud83d\ude00""#).expect("valid string");
    assert_eq!(value.as_str(), Some("a\u{1f600}b\u{1f600}"));
    let value = parse(br#""\uDBFF\uDFFF""#).expect("valid string");
    assert_eq!(value.as_str(), Some("\u{10ffff}"));
}

#[test]
fn lone_surrogates_are_rejected_at_their_escape() {
    assert_rejected(r#""\uD800""#, &JsonErrorKind::LoneSurrogate, 1);
    assert_rejected(r#""ab\uDC00""#, &JsonErrorKind::LoneSurrogate, 3);
    assert_rejected(r#""\uDE00\uD83D""#, &JsonErrorKind::LoneSurrogate, 1);
    assert_rejected(r#""\uD83Dx""#, &JsonErrorKind::LoneSurrogate, 1);
    assert_rejected(r#""\uD83D\u0041""#, &JsonErrorKind::LoneSurrogate, 1);
    assert_rejected(r#""\uD83D\uD83D""#, &JsonErrorKind::LoneSurrogate, 1);
    assert_rejected(r#""\uD83D\n""#, &JsonErrorKind::LoneSurrogate, 1);
    assert_rejected(r#"{"\uDFFF":1}"#, &JsonErrorKind::LoneSurrogate, 2);
}

#[test]
fn invalid_escapes_are_rejected() {
    assert_rejected(r#""\x41""#, &JsonErrorKind::InvalidEscape, 2);
    assert_rejected(r#""\a""#, &JsonErrorKind::InvalidEscape, 2);
    assert_rejected(r#""\'""#, &JsonErrorKind::InvalidEscape, 2);
    assert_rejected(r#""\u00G0""#, &JsonErrorKind::InvalidEscape, 5);
    assert_rejected(r#""\U0041""#, &JsonErrorKind::InvalidEscape, 2);
    assert_rejected(r#""\uD83D\uDEx0""#, &JsonErrorKind::InvalidEscape, 11);
    assert_rejected("\"\\\u{e9}\"", &JsonErrorKind::InvalidEscape, 2);
}

#[test]
fn raw_control_characters_in_strings_are_rejected() {
    assert_rejected("\"a\u{0}\"", &JsonErrorKind::ControlCharacterInString, 2);
    assert_rejected("\"tab\there\"", &JsonErrorKind::ControlCharacterInString, 4);
    assert_rejected("{\"a\nb\":1}", &JsonErrorKind::ControlCharacterInString, 3);
    assert_rejected("\"\\n\u{1f}\"", &JsonErrorKind::ControlCharacterInString, 3);
    assert_eq!(canonical("\"\u{7f}\""), "\"\u{7f}\"");
}

#[test]
fn nesting_up_to_max_depth_parses() {
    let arrays = format!("{}{}", "[".repeat(DEFAULT_MAX_DEPTH), "]".repeat(DEFAULT_MAX_DEPTH));
    assert!(parse(arrays.as_bytes()).is_ok());
    let objects = format!("{}1{}", "{\"a\":".repeat(DEFAULT_MAX_DEPTH), "}".repeat(DEFAULT_MAX_DEPTH));
    assert!(parse(objects.as_bytes()).is_ok());
}

#[test]
fn depth_limit_rejects_at_opening_bracket() {
    let too_deep = DEFAULT_MAX_DEPTH + 1;
    let arrays = format!("{}{}", "[".repeat(too_deep), "]".repeat(too_deep));
    let limit = JsonErrorKind::DepthLimitExceeded { max_depth: DEFAULT_MAX_DEPTH };
    assert_rejected(&arrays, &limit, DEFAULT_MAX_DEPTH);

    let mixed = "[{\"a\":[{\"b\":[]}]}]";
    let error = parse_with_max_depth(mixed.as_bytes(), 4).expect_err("five levels");
    assert_eq!(error.kind, JsonErrorKind::DepthLimitExceeded { max_depth: 4 });
    assert_eq!(error.offset, 12);
    assert!(parse_with_max_depth(mixed.as_bytes(), 5).is_ok());
}

#[test]
fn max_depth_zero_allows_only_scalars() {
    assert_eq!(parse_with_max_depth(b"7", 0), Ok(Value::Number(7.0)));
    let error = parse_with_max_depth(b"[]", 0).expect_err("an array nests one level");
    assert_eq!(error.kind, JsonErrorKind::DepthLimitExceeded { max_depth: 0 });
}

#[test]
fn hundred_thousand_levels_fail_fast() {
    let text = "[".repeat(100_000);
    let limit = JsonErrorKind::DepthLimitExceeded { max_depth: DEFAULT_MAX_DEPTH };
    assert_rejected(&text, &limit, DEFAULT_MAX_DEPTH);

    let objects = "{\"a\":".repeat(100_000);
    assert_eq!(parse_error(&objects).kind, JsonErrorKind::DepthLimitExceeded { max_depth: DEFAULT_MAX_DEPTH });
}

#[test]
fn unlimited_depth_parser_does_not_recurse() {
    let text = "[".repeat(100_000);
    let error = parse_with_max_depth(text.as_bytes(), usize::MAX).expect_err("unterminated");
    assert_eq!(error.kind, JsonErrorKind::UnexpectedEnd);
}

#[test]
fn duplicate_keys_compare_decoded_text() {
    assert_rejected(r#"{"a":1,"a":2}"#, &JsonErrorKind::DuplicateKey("a".into()), 7);
    assert_rejected(r#"{"a":1,"\u0061":2}"#, &JsonErrorKind::DuplicateKey("a".into()), 7);
    assert_rejected(r#"{"\/":1,"/":2}"#, &JsonErrorKind::DuplicateKey("/".into()), 8);
    assert_rejected(r#"{"x":{"b":1,"c":2,"b":3}}"#, &JsonErrorKind::DuplicateKey("b".into()), 18);
    assert!(parse(br#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
}

#[test]
fn duplicate_key_message_is_truncated() {
    let key = "k".repeat(100);
    let text = format!("{{\"{key}\":1,\"{key}\":2}}");
    let error = parse_error(&text);
    assert_eq!(error.kind, JsonErrorKind::DuplicateKey("k".repeat(64)));
}

#[test]
fn large_objects_detect_duplicates() {
    let keys: Vec<String> = (0..100_000).map(|index| format!("\"key{index}\":{index}")).collect();
    let distinct = format!("{{{}}}", keys.join(","));
    let value = parse(distinct.as_bytes()).expect("distinct keys");
    assert_eq!(value.as_object().map(<[_]>::len), Some(100_000));

    let duplicate = format!("{{{},\"key\\u0035\":0}}", keys.join(","));
    let error = parse_error(&duplicate);
    assert_eq!(error.kind, JsonErrorKind::DuplicateKey("key5".into()));
    assert_eq!(error.offset, distinct.len());

    for size in [15, 16, 17, 40] {
        let members: Vec<String> = (0..size).map(|index| format!("\"{index}\":0")).collect();
        let text = format!("{{{},\"0\":1}}", members.join(","));
        assert_eq!(parse_error(&text).kind, JsonErrorKind::DuplicateKey("0".into()), "{size}");
    }
}

#[test]
fn nested_large_objects_keep_separate_key_sets() {
    let members = |prefix: &str| -> Vec<String> { (0..40).map(|index| format!("\"{prefix}{index}\":0")).collect() };
    let inner = format!("{{{}}}", members("k").join(","));
    let outer = members("k").join(",");

    let valid = format!("{{{outer},\"inner\":{inner},\"after\":1}}");
    assert!(parse(valid.as_bytes()).is_ok());

    let duplicate_after_inner = format!("{{{outer},\"inner\":{inner},\"k39\":1}}");
    let error = parse_error(&duplicate_after_inner);
    assert_eq!(error.kind, JsonErrorKind::DuplicateKey("k39".into()));
    assert_eq!(error.offset, duplicate_after_inner.len() - "\"k39\":1}".len());

    let duplicate_inside_inner = format!("{{{outer},\"inner\":{{{},\"k0\":1}}}}", members("k").join(","));
    assert_eq!(parse_error(&duplicate_inside_inner).kind, JsonErrorKind::DuplicateKey("k0".into()));
}

#[test]
fn proto_key_is_rejected_in_any_spelling() {
    assert_rejected(r#"{"__proto__":{}}"#, &JsonErrorKind::ProtoKey, 1);
    assert_rejected(r#"{"a":1,"__proto__":null}"#, &JsonErrorKind::ProtoKey, 7);
    assert_rejected(r#"{"__prot\u006f__":1}"#, &JsonErrorKind::ProtoKey, 1);
    assert_rejected(r#"[{"a":{"__proto__":1}}]"#, &JsonErrorKind::ProtoKey, 7);
    assert_eq!(canonical(r#"{"__proto":1,"a":"__proto__"}"#), r#"{"__proto":1,"a":"__proto__"}"#);
}

#[test]
fn error_display_is_lowercase_with_offset() {
    let error = parse_error(r#"{"order":1, "a":1,"a":2}"#);
    assert_eq!(error.to_string(), "duplicate key \"a\" at byte 18");
    let error = parse_error("[1,2");
    assert_eq!(error.to_string(), "unexpected end of input at byte 4");
    let error = parse_with_max_depth(b"[[]]", 1).expect_err("too deep");
    assert_eq!(error.to_string(), "arrays and objects nested deeper than the maximum depth of 1 at byte 1");
}

#[test]
fn canonical_orders_array_index_keys_first() {
    let text = r#"{"b":1,"10":2,"2":3,"01":4,"-1":5,"4294967294":6,"4294967295":7,"a":8,"0":9}"#;
    let expected = r#"{"0":9,"2":3,"10":2,"4294967294":6,"-1":5,"01":4,"4294967295":7,"a":8,"b":1}"#;
    assert_eq!(canonical(text), expected);
}

#[test]
fn canonical_orders_keys_by_utf16_code_units() {
    let text = "{\"\u{ffff}\":1,\"\u{1f600}\":2,\"\u{e000}\":3,\"z\":4,\"\u{e9}\":5}";
    let expected = "{\"z\":4,\"\u{e9}\":5,\"\u{1f600}\":2,\"\u{e000}\":3,\"\u{ffff}\":1}";
    assert_eq!(canonical(text), expected);
}

#[test]
fn canonical_key_order_past_shared_prefixes() {
    let text = "{\"x\u{e000}\":1,\"xa\":2,\"x\u{10000}\":3,\"x\":4,\"x\\u0000\":5,\"abcdefghij\":6,\"abcdefghi\":7,\"abcdefgh\u{ffff}\":8,\"abcdefgh\u{10400}\":9}";
    let expected = "{\"abcdefghi\":7,\"abcdefghij\":6,\"abcdefgh\u{10400}\":9,\"abcdefgh\u{ffff}\":8,\"x\":4,\"x\\u0000\":5,\"xa\":2,\"x\u{10000}\":3,\"x\u{e000}\":1}";
    assert_eq!(canonical(text), expected);
}

#[test]
fn canonical_integers_print_all_digits() {
    let cases = [
        ("0", "0"),
        ("-7", "-7"),
        ("1e3", "1000"),
        ("9007199254740991", "9007199254740991"),
        ("-9007199254740991", "-9007199254740991"),
        ("9007199254740992", "9007199254740992"),
        ("-9007199254740993", "-9007199254740992"),
        ("123456789012345678", "123456789012345680"),
        ("999999999999999999999", "1e+21"),
    ];
    for (text, expected) in cases {
        assert_eq!(canonical(text), expected, "{text}");
    }
}

#[test]
fn utf16_comparison_cases() {
    assert_eq!(compare_utf16("", ""), Ordering::Equal);
    assert_eq!(compare_utf16("a", "ab"), Ordering::Less);
    assert_eq!(compare_utf16("ab", "a"), Ordering::Greater);
    assert_eq!(compare_utf16("\u{1f600}", "\u{e000}"), Ordering::Less);
    assert_eq!(compare_utf16("\u{ffff}", "\u{10000}"), Ordering::Greater);
    assert_eq!(compare_utf16("\u{d7ff}", "\u{10000}"), Ordering::Less);
    assert_eq!(compare_utf16("x\u{1f600}", "x\u{1f601}"), Ordering::Less);
    assert_eq!(compare_utf16("\u{e9}", "\u{ea}"), Ordering::Less);
    assert_eq!(compare_utf16("\u{10400}", "\u{1f600}"), Ordering::Less);
}

#[test]
fn canonical_sorts_nested_objects_inside_arrays() {
    let text = r#"{"z":1,"y":{"b":2,"a":[{"d":4,"c":3}]},"x":"s"}"#;
    assert_eq!(canonical(text), r#"{"x":"s","y":{"a":[{"c":3,"d":4}],"b":2},"z":1}"#);
    assert_eq!(canonical(" { \"a\" : [ 1 , 2 ] ,\n \"b\" : { } } "), r#"{"a":[1,2],"b":{}}"#);
    assert_eq!(canonical("[null,true,false,[],{}]"), "[null,true,false,[],{}]");
}

#[test]
fn canonical_strings_escape_like_json_stringify() {
    let text = r#""\u0000\u0007\b\t\n\u000b\f\r\u001f \"\\\/\u007f\u2028\u2029\u00e9""#;
    let expected = "\"\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/\u{7f}\u{2028}\u{2029}\u{e9}\"";
    assert_eq!(canonical(text), expected);
}

#[test]
fn canonical_writes_non_finite_numbers_as_null() {
    let value = Value::Array(vec![Value::Number(f64::NAN), Value::Number(f64::NEG_INFINITY)]);
    assert_eq!(to_canonical_string(&value), "[null,null]");
}

#[test]
fn accessors_return_matching_variants() {
    let value = parse(br#"{"s":"x","n":1.5,"a":[true],"o":{},"z":null}"#).expect("valid");
    assert_eq!(value.kind_name(), "object");
    assert_eq!(value.get("s").and_then(Value::as_str), Some("x"));
    assert_eq!(value.get("n").and_then(Value::as_f64), Some(1.5));
    assert_eq!(value.get("a").and_then(Value::as_array), Some(&[Value::Bool(true)][..]));
    assert_eq!(value.get("o").and_then(Value::as_object).map(<[_]>::len), Some(0));
    assert_eq!(value.get("missing"), None);
    assert_eq!(value.get("s").and_then(Value::as_f64), None);
    assert_eq!(Value::Number(1.0).get("s"), None);

    let names: Vec<&str> =
        ["s", "n", "a", "o", "z"].iter().filter_map(|key| value.get(key).map(Value::kind_name)).collect();
    assert_eq!(names, ["string", "number", "array", "object", "null"]);
    assert_eq!(Value::Bool(false).kind_name(), "boolean");
}
