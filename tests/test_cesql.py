"""The CESQL engine beyond the TCK: error kinds and values, precedence, casts, LIKE, IN, functions,
parse error positions, limits, and the ``cesql`` Trigger filter (verdict, ``required``, metric)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from broker.event import AttrValue, Event
from triggers.cesql import CesqlParseError, Result, compile
from triggers.filters import compile_trigger_filter
from triggers.filters.cesql import compile_cesql

BASE: dict[str, AttrValue] = {
    "specversion": "1.0",
    "id": "e1",
    "source": "/orders",
    "type": "com.example.created",
}


def ev(**attributes: AttrValue) -> Event:
    return Event({**BASE, **attributes})


def run(expression: str, event: Event | None = None) -> tuple[AttrValue, list[str]]:
    result = compile(expression).evaluate(event or ev())
    return result.value, [e.kind for e in result.errors]


ESCAPED_QUOTES = r"""'it\'s' = "it's" AND "say \"hi\"" = 'say "hi"'"""

# (expression, event attributes, value, error kinds)
EVALUATION_ROWS: list[tuple[str, dict[str, AttrValue], AttrValue, list[str]]] = [
    # every error kind, with the value the operator still yields
    ("7 / 0", {}, 0, ["math"]),
    ("7 % 0", {}, 0, ["math"]),
    ("2147483647 + 1", {}, 2147483647, ["math"]),
    ("-2147483648 - 1", {}, -2147483648, ["math"]),
    ("-2147483648 / -1", {}, 2147483647, ["math"]),
    ("-(-2147483648)", {}, 2147483647, ["math"]),
    ("65536 * 65536", {}, 2147483647, ["math"]),
    ("INT('12x')", {}, 0, ["cast"]),
    ("INT('99999999999')", {}, 0, ["cast"]),
    ("INT(' 1')", {}, 0, ["cast"]),
    ("'a' + 'b'", {}, 0, ["cast", "cast"]),
    ("1 AND TRUE", {}, False, ["cast"]),
    ("NOPE(1)", {}, False, ["missingFunction"]),
    ("LENGTH('a', 'b')", {}, False, ["missingFunction"]),
    ("LEFT('abc', -1)", {}, "abc", ["functionEvaluation"]),
    ("SUBSTRING('abc', 1, -1)", {}, "", ["functionEvaluation"]),
    ("tenant", {}, False, ["missingAttribute"]),
    ("LENGTH(tenant)", {}, 0, ["missingAttribute"]),
    ("CONCAT('a', tenant)", {}, "", ["missingAttribute"]),
    # an error below an operator gives the zero value of the whole expression's type...
    ("LENGTH(tenant) + 1", {}, 0, ["missingAttribute"]),
    ("NOT (7 / 0 = 0)", {}, False, ["math"]),
    ("CONCAT(STRING(1 / 0), 'x')", {}, "", ["math"]),
    # ...operands are evaluated before they are cast, and the first operand that faults ends the
    # evaluation; AND/OR cast their left operand before evaluating the right one
    ("'a' + tenant", {}, 0, ["missingAttribute"]),
    ("'yes' OR tenant", {}, False, ["cast", "missingAttribute"]),
    ("10 AND tenant", {}, False, ["cast"]),
    ("tenant = 'a' OR type = 'com.example.created'", {}, False, ["missingAttribute"]),
    # short-circuit skips errors entirely
    ("type = 'com.example.created' OR tenant = 'a'", {}, True, []),
    ("FALSE AND 1 / 0 = 0", {}, False, []),
    ("TRUE XOR 10", {}, True, ["cast"]),
    # a chain keeps the nested operators' results: the cast error belongs to the inner OR
    ("10 OR TRUE", {}, True, ["cast"]),
    ("FALSE OR 10 OR TRUE", {}, False, ["cast"]),
    ("TRUE AND 10 AND TRUE", {}, False, ["cast"]),
    ("10 XOR TRUE XOR FALSE", {}, True, ["cast"]),
    ("10 XOR TRUE XOR 1", {}, False, ["cast"]),  # the inner XOR faults before the outer one casts
    # constant folding never hides a run-time error
    ("type = 'x' OR 7 / 0 = 0", {}, False, ["math"]),
    # precedence and grouping (CESQLParser.g4)
    ("2 + 3 * 4", {}, 14, []),
    ("10 - 4 - 3", {}, 3, []),
    ("20 / 5 / 2", {}, 2, []),
    ("-2 * 3", {}, -6, []),
    ("1 + 1 = 2", {}, True, []),
    ("1 < 2 = TRUE", {}, True, []),
    ("NOT TRUE = FALSE", {}, True, []),
    ("NOT 'a' LIKE 'false'", {}, False, ["cast"]),
    ("TRUE OR FALSE AND FALSE", {}, True, []),
    ("FALSE AND TRUE OR TRUE", {}, False, []),
    ("(FALSE AND TRUE) OR TRUE", {}, True, []),
    ("TRUE XOR TRUE XOR TRUE", {}, True, []),
    ("2 IN (1, 2) = TRUE", {}, True, []),
    ("'ab' LIKE 'a%' AND 3 NOT IN (1, 2)", {}, True, []),
    ("5-3", {}, 2, []),
    ("+5", {}, 5, []),
    ("- 5", {}, -5, []),
    # truncated division
    ("-7 / 2", {}, -3, []),
    ("7 / -2", {}, -3, []),
    ("-7 % 3", {}, -1, []),
    ("7 % -3", {}, 1, []),
    # case-insensitive keywords, identifiers and functions
    ("exists SOURCE and Type Like 'com.%' and lower('A') = 'a'", {}, True, []),
    # attribute types: structured JSON may carry Integer / Boolean extensions
    ("count + 1", {"count": 41}, 42, []),
    ("count = '41'", {"count": 41}, True, []),
    ("count = 41", {"count": "41"}, True, []),
    ("count = 41", {"count": "041"}, True, []),
    ("count < 5", {"count": "abc"}, True, ["cast"]),
    ("flag", {"flag": True}, True, []),
    ("flag", {"flag": "true"}, "true", []),
    ("flag = TRUE", {"flag": "TRUE"}, True, []),
    ("flag AND TRUE", {"flag": "yes"}, False, ["cast"]),
    ("flag = 'true'", {"flag": True}, True, []),
    ("other = source", {"other": "/orders"}, True, []),
    ("count = source", {"count": 5}, False, []),
    ("count = flag", {"count": 1, "flag": True}, False, ["cast"]),
    # LIKE
    ("source LIKE '/ord_rs'", {}, True, []),
    ("source LIKE '%der%'", {}, True, []),
    ("source LIKE '%s'", {}, True, []),
    ("source LIKE '/%/%'", {}, False, []),
    ("'a.b' LIKE 'a_b' AND NOT ('a.b' LIKE 'a\\.b')", {}, True, []),
    ("'a*b[c' LIKE '%*b[_'", {}, True, []),
    ("'x\ny' LIKE 'x_y'", {}, True, []),
    ("'a%b' LIKE 'a\\%b' AND 'axb' NOT LIKE 'a\\%b'", {}, True, []),
    ("'aXbXb' LIKE 'a%b%b'", {}, True, []),
    ("'ab' LIKE 'a%b%b'", {}, False, []),
    ("'abab' LIKE '%ab%ab'", {}, True, []),
    ("'aaa' LIKE 'a%a_a'", {}, False, []),
    ("'' LIKE '%'", {}, True, []),
    ("12 LIKE '1_'", {}, True, []),
    ("tenant NOT LIKE 'x%'", {}, False, ["missingAttribute"]),
    # IN
    ("source IN ('/a', other)", {"other": "/orders"}, True, []),
    ("count IN (1, 2, 3)", {"count": "02"}, False, []),  # the left operand's type drives
    ("count IN ('1', '2')", {"count": 2}, True, []),
    ("count IN ('1', 'x')", {"count": 0}, True, ["cast"]),
    ("'a' IN ('a', tenant)", {}, False, ["missingAttribute"]),
    ("type NOT IN ('a', 'b')", {}, True, []),
    # functions
    ("CONCAT_WS('-', 'a', 1, TRUE)", {}, "a-1-true", []),
    ("TRIM('\u2003 a \u3000')", {}, "a", []),
    ("LENGTH(TRIM('\x1fa'))", {}, 2, []),
    ("UPPER('straße')", {}, "STRASSE", []),
    ("RIGHT('abc', 0)", {}, "", []),
    ("SUBSTRING('abc', 3)", {}, "c", []),
    ("SUBSTRING('abc', -3, 2)", {}, "ab", []),
    ("ABS(-5) + ABS('7')", {}, 12, []),
    ("IS_INT('-12') AND IS_INT(3) AND NOT IS_INT('x') AND NOT IS_INT(TRUE)", {}, True, []),
    ("IS_BOOL('False') AND IS_BOOL(TRUE) AND NOT IS_BOOL(1)", {}, True, []),
    ("BOOL(0) OR BOOL('FALSE')", {}, False, []),
    ("STRING(-3) = '-3'", {}, True, []),
    # literals
    (ESCAPED_QUOTES, {}, True, []),
    ("'a\\b'", {}, "a\\b", []),
    ("-2147483648", {}, -2147483648, []),
]


@pytest.mark.parametrize(("expression", "attributes", "value", "kinds"), EVALUATION_ROWS)
def test_evaluation(
    expression: str, attributes: dict[str, AttrValue], value: AttrValue, kinds: list[str]
) -> None:
    got_value, got_kinds = run(expression, ev(**attributes))
    assert (got_value, type(got_value), got_kinds) == (value, type(value), kinds)


# (expression, position, reason fragment)
PARSE_ERROR_ROWS = [
    ("type = ", 7, "expected an expression, found end of expression"),
    ("ABC(", 4, "expected an expression"),
    ("x LIKE 123", 7, "LIKE pattern must be a string literal"),
    ("x LIKE y", 7, "LIKE pattern must be a string literal"),
    ("'abc", 0, "unterminated string literal"),
    ("a # b", 2, "unexpected character '#'"),
    ("2147483648", 0, "outside the signed 32-bit range"),
    ("1 + -2147483649", 4, "outside the signed 32-bit range"),
    ("(1 + 2", 6, "expected ')'"),
    ("x IN ()", 2, "at least one element"),
    ("x IN 1", 5, "'(' to open the IN set"),
    ("x IN (1 2)", 8, "expected ',' or ')' in IN set"),
    ("a NOT b", 2, "expected end of expression, found 'NOT'"),
    ("my_ext = 1", 0, "invalid attribute name 'my_ext'"),
    ("EXISTS 1", 7, "an attribute name after EXISTS"),
    ("f1(2)", 0, "invalid function name 'f1'"),
    ("1 2", 2, "expected end of expression"),
    ("+'5'", 0, "expected an expression, found '+'"),
    ("'a' 'b'", 4, "found a string literal"),
    ("", 0, "expected an expression, found end of expression"),
]


@pytest.mark.parametrize(("expression", "position", "reason"), PARSE_ERROR_ROWS)
def test_parse_errors(expression: str, position: int, reason: str) -> None:
    with pytest.raises(CesqlParseError) as caught:
        compile(expression)
    assert caught.value.kind == "parse"
    assert caught.value.position == position
    assert reason in caught.value.reason
    assert str(caught.value) == f"position {position}: {caught.value.reason}"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "expression", ["(" * 150 + "1" + ")" * 150, "NOT " * 150 + "TRUE", "1" + " + 1" * 150]
)
def test_nesting_limit_is_a_parse_error(expression: str) -> None:
    with pytest.raises(CesqlParseError, match="nested more than"):
        compile(expression)


def test_long_logic_chains_need_no_recursion() -> None:
    ors = " OR ".join(f"source = '/s{i}'" for i in range(3000))
    assert compile(ors + " OR source = '/orders'").evaluate(ev()) == Result(True, ())
    ands = " AND ".join(["EXISTS id"] * 3000)
    assert compile(ands + " AND 10").evaluate(ev()).value is False


def test_result_and_expression_api() -> None:
    expression = compile("type LIKE 'com.%'")
    assert expression.source == "type LIKE 'com.%'"
    assert expression.evaluate(ev()).passes
    assert not compile("'true'").evaluate(ev()).passes
    assert not compile("NOT 10").evaluate(ev()).passes  # value true, but with an error
    assert expression.verdict(ev(type="org.x")) == (False, ())


# --- the cesql Trigger filter ------------------------------------------------------------------

MATCH_ROWS = [
    ("type = 'com.example.created'", ev(), True),
    ("type = 'com.example.created'", ev(type="x"), False),
    ("subject = 's'", ev(), False),  # missingAttribute
    ("'true'", ev(), False),  # a String, not a Boolean
    ("1", ev(), False),
    ("NOT 10", ev(), False),  # true, with a cast error
    ("flag", ev(flag=True), True),
    ("flag", ev(flag="true"), False),  # a String: cast it with BOOL(flag) or compare flag = TRUE
    ("flag = TRUE", ev(flag="true"), True),
]


@pytest.mark.parametrize(("expression", "event", "expected"), MATCH_ROWS)
def test_filter_matches(expression: str, event: Event, expected: bool) -> None:
    assert compile_cesql(expression, trigger="ns/t").matches(event) is expected
    spec = [{"cesql": expression}]
    assert compile_trigger_filter(None, spec, trigger="ns/t").matches(event) is expected


REQUIRED_ROWS: list[tuple[str, dict[str, str]]] = [
    ("type = 'a'", {"type": "a"}),
    ("type = 'a' AND source = 'b' AND subject LIKE 'x%'", {"type": "a", "source": "b"}),
    ("(type = 'a' AND x = 1) AND (subject = 's' AND EXISTS y)", {"type": "a", "subject": "s"}),
    ("type = 'a' OR source = 'b'", {}),
    ("type = 'a' AND (source = 'b' OR source = 'c')", {"type": "a"}),
    ("'a' = type", {}),  # '05' = count is true for count 5: not a canonical-string equality
    ("count = 5", {}),
    ("flag = 'true' AND flag = TRUE", {"flag": "true"}),
    ("type = 'a' AND type = 'b'", {}),
    ("NOT type = 'a'", {}),
    ("type != 'a'", {}),
    ("TRUE AND type = 'a'", {"type": "a"}),
]


@pytest.mark.parametrize(("expression", "required"), REQUIRED_ROWS)
def test_filter_required(expression: str, required: dict[str, str]) -> None:
    assert dict(compile_cesql(expression, trigger="ns/t").required) == required


def _errors(trigger: str, kind: str) -> float:
    labels = {"trigger": trigger, "kind": kind}
    return REGISTRY.get_sample_value("weir_cesql_evaluation_errors_total", labels) or 0.0


def test_filter_counts_evaluation_errors_per_trigger_and_kind() -> None:
    trigger = "ns/metrics-test"
    flt = compile_cesql("tenant = 'acme' OR INT(source) = 1", trigger=trigger)
    assert not flt.matches(ev())
    assert not flt.matches(ev())
    assert _errors(trigger, "missingAttribute") == 2
    assert not flt.matches(ev(tenant="other"))
    assert _errors(trigger, "cast") == 1
    assert not flt.matches(ev(tenant="other", source="2"))
    assert flt.matches(ev(tenant="acme"))
    assert (_errors(trigger, "missingAttribute"), _errors(trigger, "cast")) == (2, 1)


def test_filter_rejects_invalid_expressions() -> None:
    with pytest.raises(CesqlParseError) as caught:
        compile_cesql("type = ", trigger="ns/t")
    assert (caught.value.position, caught.value.reason) == (
        7,
        "expected an expression, found end of expression",
    )
