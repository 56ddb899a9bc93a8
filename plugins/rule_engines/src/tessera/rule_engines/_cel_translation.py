"""Common CEL rules translated to Python functions that decide only where CEL's answer is certain.

cel-cpp evaluates a rule in 3 to 6 µs through its Python bindings, mostly in converting the
record and crossing into C++; the same check written in Python takes a tenth of that. This module
translates a subset of CEL into Python source, compiled once per rule, whose every operation is
guarded so that it produces a value only when its operands are of the kinds where Python and CEL
agree exactly (integers within int64, finite doubles, strings, bools, null, lists, maps). Any
other case (a missing field, a type mismatch, an overflow, a division by zero, a non-ASCII string
under a regular expression) raises `Undecided`, and the engine asks cel-cpp, which gives CEL's own
answer or error. The translation therefore never changes a verdict; it only skips cel-cpp on the
records where the answer is plain.

The subset: `record` and its fields (`record.f`, `record['f']`, `record.items[0]`), int, double,
string (no escapes), bool and null literals, list literals, `! - * / % + - < <= > >= == != in &&
|| ?:`, `has(record.f)`, `size(x)` / `x.size()`, and the string methods `matches` (a pattern
whose regular-expression syntax means the same in RE2 and Python), `startsWith`, `endsWith`,
`contains`. Anything else (macros, other functions, uint or bytes literals, escapes) is not
translated: the rule always runs on cel-cpp.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: A translated rule: the record in, a bool out, or `Undecided` raised.
Translated = Callable[[Mapping[str, object]], bool]


class Undecided(Exception):  # noqa: N818 - not an error: "ask the reference engine"
    """The translated rule cannot decide this record exactly; cel-cpp must."""


class _Untranslatable(Exception):  # noqa: N818 - internal signal, never escapes translate()
    """The expression is outside the translated subset."""


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<double>\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)
  | (?P<int>0[xX][0-9a-fA-F]+|\d+)(?P<suffix>[uU]?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_RESERVED = {"in": "op", "true": "bool", "false": "bool", "null": "null"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str


def _tokens(expression: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise _Untranslatable(expression[position:])
        position = match.end()
        kind = match.lastgroup
        if kind == "suffix":  # an int token: the suffix group is the last one that matched
            if match.group("suffix"):
                raise _Untranslatable("uint literal")
            kind = "int"
        assert kind is not None
        if kind == "space":
            continue
        text = match.group(kind)
        if kind == "name" and text in _RESERVED:
            kind = _RESERVED[text]
        out.append(_Token(kind, text))
    out.append(_Token("end", ""))
    return out


# Expression nodes: ("kind", ...) tuples; `static` says what Python type the code yields.
@dataclass(frozen=True, slots=True)
class _Code:
    text: str
    #: "bool", "num", "str", "null", "list" when the code is known to yield a value of that kind
    #: on which CEL and Python agree (a literal, or a guarded value); "any" for a raw value that
    #: must be guarded before use.
    kind: str
    #: The value of a literal (lists of literals included); None otherwise.
    literal: object = None
    #: For a field selection `x.f`: the code of `x` and the name `f` (what `has()` needs).
    selection: tuple[str, str] | None = None


class _Translator:
    """Recursive descent over CEL's grammar, emitting guarded Python expressions."""

    def __init__(self, expression: str) -> None:
        self._tokens = _tokens(expression)
        self._at = 0
        self.constants: dict[str, Any] = {}

    def translate(self) -> _Code:
        code = self._conditional()
        if self._peek().kind != "end":
            raise _Untranslatable("trailing input")
        return code

    # --- grammar -------------------------------------------------------------------------------

    def _conditional(self) -> _Code:
        condition = self._or()
        if self._accept("?"):
            then = self._conditional()
            self._expect(":")
            otherwise = self._conditional()
            kind = then.kind if then.kind == otherwise.kind else "any"
            return _Code(f"({then.text} if {_bool(condition)} else {otherwise.text})", kind)
        return condition

    def _or(self) -> _Code:
        left = self._and()
        while self._accept("||"):
            right = self._and()
            left = _Code(f"({_bool(left)} or {_bool(right)})", "bool")
        return left

    def _and(self) -> _Code:
        left = self._relation()
        while self._accept("&&"):
            right = self._relation()
            left = _Code(f"({_bool(left)} and {_bool(right)})", "bool")
        return left

    def _relation(self) -> _Code:
        left = self._sum()
        while self._peek().text in ("<", "<=", ">", ">=", "==", "!=", "in"):
            op = self._next().text
            right = self._sum()
            left = self._compare(op, left, right)
        return left

    def _sum(self) -> _Code:
        left = self._product()
        while self._peek().text in ("+", "-"):
            op = self._next().text
            right = self._product()
            helper = "_add" if op == "+" else "_sub"
            left = _Code(f"{helper}({left.text}, {right.text})", "any")
        return left

    def _product(self) -> _Code:
        left = self._unary()
        while self._peek().text in ("*", "/", "%"):
            op = self._next().text
            right = self._unary()
            helper = {"*": "_mul", "/": "_div", "%": "_mod"}[op]
            left = _Code(f"{helper}({left.text}, {right.text})", "any")
        return left

    def _unary(self) -> _Code:
        if self._accept("!"):
            return _Code(f"(not {_bool(self._unary())})", "bool")
        if self._accept("-"):
            return _Code(f"_neg({self._unary().text})", "any")
        return self._member()

    def _member(self) -> _Code:
        code = self._primary()
        while True:
            if self._accept("."):
                name = self._expect_kind("name")
                if self._accept("("):
                    code = self._method(code, name)
                else:
                    # A plain subscript: on anything but a map holding the key it raises, and
                    # every exception means "undecided".
                    code = _Code(f"{code.text}[{name!r}]", "any", selection=(code.text, name))
            elif self._accept("["):
                key = self._conditional()
                self._expect("]")
                code = _Code(f"_index({code.text}, {key.text})", "any")
            else:
                return code

    def _primary(self) -> _Code:
        token = self._next()
        if token.kind == "int":
            value = int(token.text, 0)
            if value > _INT64_MAX:
                raise _Untranslatable("int literal out of range")
            return _Code(repr(value), "num", literal=value)
        if token.kind == "double":
            value_f = float(token.text)
            if not math.isfinite(value_f):
                raise _Untranslatable("double literal out of range")
            return _Code(repr(value_f), "num", literal=value_f)
        if token.kind == "string":
            text = _unescape(token.text[1:-1])
            return _Code(repr(text), "str", literal=text)
        if token.kind == "bool":
            return _Code(token.text.capitalize(), "bool", literal=token.text == "true")
        if token.kind == "null":
            return _Code("None", "null")
        if token.text == "(":
            inner = self._conditional()
            self._expect(")")
            return inner
        if token.text == "[":
            items = [] if self._accept("]") else self._arguments("]")
            literal = (
                [item.literal for item in items]
                if all(item.literal is not None for item in items)
                else None
            )
            return _Code(f"[{', '.join(item.text for item in items)}]", "list", literal=literal)
        if token.kind == "name":
            if token.text == "record":
                return _Code("record", "any")
            if self._accept("("):
                return self._function(token.text)
        raise _Untranslatable(f"unsupported token {token.text!r}")

    def _function(self, name: str) -> _Code:
        if name == "has":
            target = self._conditional()
            self._expect(")")
            if target.selection is None:
                raise _Untranslatable("has() of something other than a field")
            base, name = target.selection
            return _Code(f"({name!r} in _map({base}))", "bool")
        arguments = self._arguments(")")
        if name == "size" and len(arguments) == 1:
            return _Code(f"_size({arguments[0].text})", "num")  # an int: checked already
        raise _Untranslatable(f"function {name}")

    def _method(self, target: _Code, name: str) -> _Code:
        arguments = [] if self._accept(")") else self._arguments(")")
        if name == "size" and not arguments:
            return _Code(f"_size({target.text})", "num")
        if len(arguments) != 1:
            raise _Untranslatable(f"method {name}")
        (argument,) = arguments
        if name == "matches":
            if type(argument.literal) is not str:
                raise _Untranslatable("matches() with a pattern that is not a literal")
            pattern = _python_pattern(argument.literal)
            constant = self._constant(re.compile(pattern, re.ASCII).search)
            return _Code(f"({constant}(_ascii({target.text})) is not None)", "bool")
        methods = {"startsWith": "startswith", "endsWith": "endswith"}
        if name in methods:
            call = f"{_guarded(target, '_str')}.{methods[name]}({_guarded(argument, '_str')})"
            return _Code(call, "bool")
        if name == "contains":
            return _Code(f"({_guarded(argument, '_str')} in {_guarded(target, '_str')})", "bool")
        raise _Untranslatable(f"method {name}")

    def _compare(self, op: str, left: _Code, right: _Code) -> _Code:
        if op == "in":
            items = right.literal
            if type(items) is list and items and all(type(item) is str for item in items):
                constant = self._constant(frozenset(items))
                return _Code(f"({_guarded(left, '_str')} in {constant})", "bool")
            raise _Untranslatable("'in' other than a string in a list of string literals")
        if op in ("==", "!="):
            # Python's == is CEL's on two numbers (exact across int and double), two strings,
            # two bools; a known kind on one side guards the other to the same kind.
            for kind, guard in (("num", "_num"), ("str", "_str"), ("bool", "_truth")):
                if kind in (left.kind, right.kind):
                    return _Code(f"({_guarded(left, guard)} {op} {_guarded(right, guard)})", "bool")
            negate = "not " if op == "!=" else ""
            return _Code(f"({negate}_eq({left.text}, {right.text}))", "bool")
        # Ordering: both sides numbers, or both strings, or both bools (false < true).
        for kind, guard in (("num", "_num"), ("str", "_str"), ("bool", "_truth")):
            if kind in (left.kind, right.kind):
                return _Code(f"({_guarded(left, guard)} {op} {_guarded(right, guard)})", "bool")
        return _Code(f"_order({left.text}, {right.text}, {op!r})", "bool")

    # --- tokens --------------------------------------------------------------------------------

    def _arguments(self, closing: str) -> list[_Code]:
        items = [self._conditional()]
        while self._accept(","):
            items.append(self._conditional())
        self._expect(closing)
        return items

    def _constant(self, value: object) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _accept(self, text: str) -> bool:
        token = self._peek()
        if token.kind in ("op",) and token.text == text:
            self._at += 1
            return True
        return False

    def _expect(self, text: str) -> None:
        if not self._accept(text):
            raise _Untranslatable(f"expected {text!r}")

    def _expect_kind(self, kind: str) -> str:
        token = self._next()
        if token.kind != kind:
            raise _Untranslatable(f"expected a {kind}")
        return token.text


_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def _unescape(body: str) -> str:
    """Read a CEL string literal's body; only the common escapes are translated."""

    def escape(match: re.Match[str]) -> str:
        replacement = _ESCAPES.get(match.group(1))
        if replacement is None:
            raise _Untranslatable("string escape")
        return replacement

    return re.sub(r"\\(.)", escape, body, flags=re.DOTALL)


def _bool(code: _Code) -> str:
    return _guarded(code, "_truth")


_GUARD_KINDS = {"_num": "num", "_str": "str", "_truth": "bool"}


def _guarded(code: _Code, guard: str) -> str:
    """Return code yielding the operand checked by `guard` (as is when its kind is known)."""
    if code.kind == _GUARD_KINDS[guard]:
        return code.text
    if code.kind != "any":
        raise _Untranslatable("an operand of the wrong kind")  # the type checker allowed dyn
    return f"{guard}({code.text})"


# RE2 and Python agree on these constructs (with re.ASCII, on ASCII text): literals, escaped
# punctuation, classes of literals and ranges, \d and \w, anchors, groups, alternation and
# counted or plain repetition. Anything else (\s, \b, flags, lookaround, backreferences, named
# groups, Unicode classes) is left to RE2.
_PATTERN_PART = re.compile(
    r"""(?P<escape>\\[.^$*+?()\[\]{}|\\/\-]|\\[dDwW])"""
    r"""|(?P<set>\[\^?(?:\\[\]\\\-^dw]|[^\]\\\[&~|])+\])"""
    r"""|(?P<open>\(\?:|\()|(?P<close>\))|(?P<bar>\|)"""
    r"""|(?P<repeat>[*+?]\??|\{(?P<low>\d+)(?:,(?P<high>\d*))?\}\??)"""
    r"""|(?P<anchor>[\^$])|(?P<literal>[.A-Za-z0-9 @_#%&'"`~=<>,;:!/-])"""
)
# What a repetition may follow: something that matches characters.
_REPEATABLE = {"escape", "set", "close", "literal"}
_MAX_REPEAT = 1000  # RE2 refuses larger counts; Python would accept them


def _python_pattern(pattern: str) -> str:
    parts = []
    position = 0
    previous = ""
    while position < len(pattern):
        match = _PATTERN_PART.match(pattern, position)
        if match is None:
            raise _Untranslatable(f"pattern {pattern!r}")
        kind, part = match.lastgroup, match.group()
        if kind in ("low", "high"):
            kind = "repeat"
        if kind == "set" and "--" in part:
            raise _Untranslatable("a set Python may read as a set difference")
        if kind == "repeat":
            # A repetition of nothing, of an anchor or of a repetition (possessive in Python,
            # an error in RE2) is left to RE2.
            if previous not in _REPEATABLE:
                raise _Untranslatable("repetition")
            low, high = match.group("low"), match.group("high")
            if low is not None and (
                int(low) > _MAX_REPEAT or (high and not int(low) <= int(high) <= _MAX_REPEAT)
            ):
                raise _Untranslatable("repetition count")
        # RE2's `$` (no multi-line flag) is the end of the text; Python's also matches before a
        # final newline, so it becomes \Z.
        parts.append(r"\Z" if part == "$" else part)
        previous = kind or ""
        position = match.end()
    return "".join(parts)


# --- guards: each returns its operand when CEL and Python agree on it, or raises Undecided ------


def _num(value: object) -> int | float:
    kind = type(value)
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            return value  # type: ignore[return-value]
    elif kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    raise Undecided


def _str(value: object) -> str:
    if type(value) is str:
        return value
    raise Undecided


def _ascii(value: object) -> str:
    if type(value) is str and value.isascii():
        return value
    raise Undecided


def _truth(value: object) -> bool:
    if type(value) is bool:
        return value
    raise Undecided


def _map(value: object) -> Mapping[str, object]:
    if isinstance(value, Mapping):
        return value
    raise Undecided


def _index(value: object, key: object) -> object:
    if type(key) is str and isinstance(value, Mapping) and key in value:
        return value[key]
    if type(key) is int and type(value) is list and 0 <= key < len(value):
        return value[key]
    raise Undecided


def _size(value: object) -> int:
    if type(value) in (str, list, dict):
        return len(value)  # type: ignore[arg-type]
    raise Undecided


def _eq(left: object, right: object) -> bool:
    kinds = (type(left), type(right))
    if kinds in _EQUAL_KINDS:
        return left == right
    if kinds in _NUMERIC_KINDS:
        return _num(left) == _num(right)
    raise Undecided


_EQUAL_KINDS = {(str, str), (bool, bool), (type(None), type(None))}
_NUMERIC_KINDS = {(int, int), (int, float), (float, int), (float, float)}


def _order(left: object, right: object, op: str) -> bool:
    kinds = (type(left), type(right))
    if kinds in _NUMERIC_KINDS:
        left, right = _num(left), _num(right)
    elif kinds not in ((str, str), (bool, bool)):
        raise Undecided
    return bool(_ORDER[op](left, right))


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _int_result(value: int) -> int:
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise Undecided  # CEL: overflow error


def _arithmetic(left: object, right: object) -> tuple[type, Any, Any]:
    kind = type(left)
    if kind is not type(right):
        raise Undecided  # CEL has no mixed int/double arithmetic
    if kind is int or kind is float:
        return kind, _num(left), _num(right)
    raise Undecided


def _add(left: object, right: object) -> object:
    kind = type(left)
    if kind is str and type(right) is str:
        return left + right  # type: ignore[operator]
    if kind is list and type(right) is list:
        return left + right  # type: ignore[operator]
    kind, a, b = _arithmetic(left, right)
    return _int_result(a + b) if kind is int else _finite(a + b)


def _sub(left: object, right: object) -> object:
    kind, a, b = _arithmetic(left, right)
    return _int_result(a - b) if kind is int else _finite(a - b)


def _mul(left: object, right: object) -> object:
    kind, a, b = _arithmetic(left, right)
    return _int_result(a * b) if kind is int else _finite(a * b)


def _div(left: object, right: object) -> object:
    kind, a, b = _arithmetic(left, right)
    if b == 0:
        raise Undecided  # CEL: int division by zero errs; double division yields an infinity
    if kind is int:
        if a < 0 or b < 0:
            raise Undecided  # CEL truncates towards zero; Python floors
        return a // b
    return _finite(a / b)


def _mod(left: object, right: object) -> object:
    kind, a, b = _arithmetic(left, right)
    if kind is not int or b == 0 or a < 0 or b < 0:
        raise Undecided  # no double modulo in CEL; signs follow C, not Python
    return a % b


def _neg(value: object) -> object:
    number = _num(value)
    return _int_result(-number) if type(number) is int else -number


def _finite(value: float) -> float:
    if math.isfinite(value):
        return value
    raise Undecided


_SURROGATE = re.compile("[\ud800-\udfff]")
_UINT64_END = 2**64


def convertible(record: object) -> bool:
    """Whether cel-cpp's bindings convert the record without error: only JSON-like values.

    cel-cpp converts the whole record before evaluating any rule, and fails every rule of a
    record holding a value it cannot convert (an integer outside int64 and uint64, a string that
    is not valid Unicode, a type JSON does not have), even rules that never read it. The
    translation keeps that: it decides only records this returns True for.
    """
    return type(record) is dict and _convertible_map(record)


def _convertible_map(value: dict[Any, Any]) -> bool:
    # One loop with the common cases inline: this runs on every record.
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str:
            return False
        if kind is str:
            if not item.isascii() and _SURROGATE.search(item) is not None:
                return False
        elif kind is int:
            if not _INT64_MIN <= item < _UINT64_END:
                return False
        elif (
            kind is not float
            and kind is not bool
            and item is not None
            and not _convertible_value(item)
        ):
            return False
    return True


def _convertible_value(item: object) -> bool:
    if type(item) is str:
        return item.isascii() or _SURROGATE.search(item) is None
    if type(item) is int:
        return _INT64_MIN <= item < _UINT64_END
    if type(item) is float or type(item) is bool or item is None:
        return True
    if type(item) is dict:
        return _convertible_map(item)
    if type(item) is list:
        return all(_convertible_value(element) for element in item)
    return False


# What generated code may call: the guards, and nothing else (no builtins).
_GUARDS: dict[str, object] = {
    guard.__name__: guard
    for guard in (
        _num,
        _str,
        _ascii,
        _truth,
        _map,
        _index,
        _size,
        _eq,
        _order,
        _add,
        _sub,
        _mul,
        _div,
        _mod,
        _neg,
    )
}


@dataclass(frozen=True, slots=True)
class Translation:
    """A rule translated to Python.

    Attributes:
        source: The Python expression over `record` (for tests and debugging).
        constants: Compiled patterns and sets the expression refers to, by name.
        function: The compiled rule: record in, bool out, or `Undecided` raised.

    """

    source: str
    constants: dict[str, Any]
    function: Translated


def translate(expression: str) -> Translation | None:
    """Translate a CEL rule into a Python function, or None when it is outside the subset.

    Call it only on an expression cel-cpp compiled and type-checked: the translation relies on
    that and does not check types itself beyond what it needs to be exact.
    """
    try:
        translator = _Translator(expression)
        code = translator.translate()
    except _Untranslatable:
        return None
    source = _bool(code)
    namespace: dict[str, Any] = {"__builtins__": {}, **_GUARDS, **translator.constants}
    function = eval(f"lambda record: {source}", namespace)
    return Translation(source, translator.constants, function)


def translate_all(expressions: list[str]) -> Callable[[Mapping[str, object]], tuple[bool, ...]]:
    """Compile translated rules into one function returning every verdict as a tuple.

    Every expression must translate (see `translate`). One call per record evaluates all rules
    with a single Python frame; any `Undecided` (or other exception) propagates, and the caller
    then decides rule by rule.
    """
    translator_constants: dict[str, Any] = {}
    parts = []
    for index, expression in enumerate(expressions):
        translator = _Translator(expression)
        code = translator.translate()
        text = _bool(code)
        for name, value in translator.constants.items():
            renamed = f"{name}_{index}"
            translator_constants[renamed] = value
            text = re.sub(rf"\b{name}\b", renamed, text)
        parts.append(text)
    namespace: dict[str, Any] = {"__builtins__": {}, **_GUARDS, **translator_constants}
    tuple_text = "(" + "".join(f"{part}, " for part in parts) + ")"
    function: Callable[[Mapping[str, object]], tuple[bool, ...]] = eval(
        f"lambda record: {tuple_text}", namespace
    )
    return function
