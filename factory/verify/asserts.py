"""Assert tests, judged outside the sandbox.

`assert add(1, 2) == 3` is split in two: the calls into the program (`add(1, 2)`) run in
the sandbox, which reports what each returned as plain data, and the rest (`_ == 3`) is
evaluated here, on the parsed values. So expected values never enter the sandbox, nothing
the program can read or print decides the verdict, and an object whose __eq__ lies is not
plain data, hence a wrong answer.

What stays outside: literals, displays, operators, comparisons, `and`/`or`/`not`,
subscripts, and calls of a few pure builtins (abs, len, sorted, set, ..., math.isclose)
unless the program defines that name itself. Anything else is a call into the program.
Statements other than asserts and imports cannot be split, nor a comparison inside a
call into the program (`all(f(x) == y for ...)`): such tests are rejected as bad_tests.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import operator
from dataclasses import dataclass
from typing import Any

_FUNCS = ("abs", "all", "any", "bool", "dict", "float", "frozenset", "int", "isinstance", "len", "list",
          "max", "min", "round", "set", "sorted", "str", "sum", "tuple", "type", "bytes", "complex")
_TYPES = ("int", "float", "str", "bool", "list", "tuple", "dict", "set", "frozenset", "bytes", "complex")
_MATH = ("isclose", "sqrt", "floor", "ceil", "fabs", "inf", "pi", "e")
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
        ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
        ast.BitAnd: operator.and_, ast.BitXor: operator.xor}
_UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_CALL = "_call_"  # hole names: `_call_3` stands for what the 4th call into the program returned


class BadTests(ValueError):
    """An assert that cannot be judged outside the sandbox."""


@dataclass(frozen=True)
class Check:
    source: str  # the assert as written
    test: ast.expr  # its condition, calls into the program replaced by _call_N names
    calls: tuple[int, ...]  # the N of those names


@dataclass(frozen=True)
class Plan:
    setup: list[str]  # imports from the tests, run after the program
    calls: list[str]  # expressions the sandbox evaluates, in order
    checks: list[Check]


def _bound_names(program: str) -> set[str]:
    """Names the program binds anywhere: a test's `max(...)` then means the program's max."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return set()
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, ast.alias) and not (n.name == "math" and n.asname in (None, "math")):
            names.add((n.asname or n.name).split(".")[0])
    return names


class _Splitter:
    def __init__(self, shadowed: set[str]):
        self.shadowed, self.calls = shadowed, []

    def _safe_name(self, node: ast.expr, allowed: tuple[str, ...]) -> bool:
        return isinstance(node, ast.Name) and node.id in allowed and node.id not in self.shadowed

    def _outside(self, node: ast.expr) -> bool:
        """Whether this node itself is evaluated here (its children are split on their own)."""
        if isinstance(node, (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.UnaryOp, ast.BinOp, ast.BoolOp,
                             ast.Compare, ast.Subscript, ast.Slice)):
            return not (isinstance(node, ast.BinOp) and type(node.op) not in _BIN)
        if isinstance(node, ast.Dict):
            return None not in node.keys  # `**x` in a display
        if isinstance(node, ast.Name):
            return self._safe_name(node, _TYPES)
        if isinstance(node, ast.Attribute):  # math.pi, math.inf
            return self._safe_name(node.value, ("math",)) and node.attr in _MATH
        if isinstance(node, ast.Call):
            f = node.func
            plain_args = not any(isinstance(a, ast.Starred) for a in node.args) and all(k.arg for k in node.keywords)
            return plain_args and (self._safe_name(f, _FUNCS) or (
                isinstance(f, ast.Attribute) and self._safe_name(f.value, ("math",)) and f.attr in _MATH))
        return False

    def split(self, node: ast.expr) -> ast.expr:
        if not self._outside(node):
            if any(isinstance(n, ast.Compare) for n in ast.walk(node)):
                raise BadTests(f"it compares inside a call into the program ({ast.unparse(node)[:80]})")
            self.calls.append(ast.unparse(node))
            return ast.Name(id=f"{_CALL}{len(self.calls) - 1}", ctx=ast.Load())
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return ast.Call(node.func, [self.split(a) for a in node.args],
                            [ast.keyword(k.arg, self.split(k.value)) for k in node.keywords])
        if isinstance(node, ast.Attribute):
            return node
        new = type(node)()
        for field, value in ast.iter_fields(node):
            if isinstance(value, ast.expr) and field != "func":
                value = self.split(value)
            elif isinstance(value, list):
                value = [self.split(v) if isinstance(v, ast.expr) else
                         ast.keyword(v.arg, self.split(v.value)) if isinstance(v, ast.keyword) else v for v in value]
            setattr(new, field, value)
        return new


def plan(asserts: list[str], program: str) -> Plan:
    """Split the asserts; raises BadTests naming the first one that cannot be split."""
    splitter = _Splitter(_bound_names(program))
    setup, checks = [], []
    for i, text in enumerate(asserts, 1):
        try:
            tree = ast.parse(text)
            for stmt in tree.body:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    setup.append(ast.unparse(stmt))
                elif isinstance(stmt, ast.Assert):
                    first = len(splitter.calls)
                    test = splitter.split(stmt.test)
                    checks.append(Check(ast.unparse(stmt), test, tuple(range(first, len(splitter.calls)))))
                else:
                    raise BadTests(f"only assert and import statements can be judged, not {type(stmt).__name__}")
        except SyntaxError as e:
            raise BadTests(f"assert {i}/{len(asserts)} is not Python: {e.msg}") from None
        except BadTests as e:
            raise BadTests(f"assert {i}/{len(asserts)}: {e}") from None
    if not checks:
        raise BadTests("the tests hold no assert statement")
    return Plan(setup, splitter.calls, checks)


# --- in the sandbox ---------------------------------------------------------------------

# Runs as main.py, after PROGRAM, SETUP and CALLS are defined above it. Results go to the
# stdout it was started with; the program's own prints go to stderr. Nothing here needs to
# be trusted: the program can rewrite all of it, and can still only report values.
_HARNESS = r'''
import json as _json, os as _os, sys as _sys, types as _types

_out = _os.fdopen(_os.dup(1), "w", encoding="utf-8")
_os.dup2(2, 1)


def _plain(v):
    t = type(v)
    if t is int and v.bit_length() > 4000:  # past int's decimal digit limit, but hex is exempt
        return {"int": hex(v)}
    if v is None or t is bool or t is int or t is float or t is str:
        return v
    if t is list:
        return [_plain(x) for x in v]
    if t is tuple or t is set or t is frozenset:
        return {t.__name__: [_plain(x) for x in v]}
    if t is dict:
        return {"dict": [[_plain(k), _plain(x)] for k, x in v.items()]}
    if t is bytes:
        return {"bytes": v.hex()}
    if t is complex:
        return {"complex": [v.real, v.imag]}
    raise TypeError(f"returned an object of type {t.__name__}, which is not plain data")


_main = _types.ModuleType("__main__")
_main.__file__ = "/sandbox/program.py"
_sys.modules["__main__"] = _main
exec(compile(PROGRAM, "/sandbox/program.py", "exec"), _main.__dict__)
for _src in SETUP:
    exec(_src, _main.__dict__)
for _k, _src in enumerate(CALLS):
    try:
        _v = eval(_src, _main.__dict__)
    except BaseException as _e:  # SystemExit too: a call that exits never returned
        try:
            _line = [_k, "raised", (f"{type(_e).__name__}: {_e}" if str(_e) else type(_e).__name__)[:300]]
        except BaseException:
            _line = [_k, "raised", type(_e).__name__]
    else:
        try:
            _line = [_k, "value", _plain(_v)]
        except TypeError as _e:
            _line = [_k, "unplain", str(_e)[:200]]
        except RecursionError:
            _line = [_k, "unplain", "returned data nested too deeply (or containing itself)"]
    _out.write(_json.dumps(_line) + "\n")
_out.write('"end"\n')
_out.flush()
'''


def harness(program: str, p: Plan) -> str:
    return f"PROGRAM = {program!r}\nSETUP = {p.setup!r}\nCALLS = {p.calls!r}\n{_HARNESS}"


# --- back outside -----------------------------------------------------------------------


class Malformed(ValueError):
    """The result stream is not exactly what the harness writes."""


def _from_plain(x: Any) -> Any:
    if x is None or type(x) in (bool, int, float, str):
        return x
    if type(x) is list:
        return [_from_plain(v) for v in x]
    if type(x) is dict and len(x) == 1:
        ((tag, v),) = x.items()
        if tag == "int" and type(v) is str:
            return int(v, 16)
        if tag == "bytes" and type(v) is str:
            return bytes.fromhex(v)
        if tag == "complex" and type(v) is list and len(v) == 2:
            return complex(*(float(p) for p in v))
        if tag in ("tuple", "set", "frozenset") and type(v) is list:
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](_from_plain(e) for e in v)
        if tag == "dict" and type(v) is list and all(type(p) is list and len(p) == 2 for p in v):
            return {_from_plain(k): _from_plain(e) for k, e in v}
    raise Malformed("not plain data")


def parse_results(stdout: str, n: int) -> tuple[list[tuple[str, Any]], bool]:
    """The (kind, value) of each call in order, and whether the stream was complete.

    Anything else in the stream (a line too many, out of order, or not the harness's
    shape) raises Malformed: forged lines can only make a verdict worse.
    """
    lines = stdout.split("\n")
    out: list[tuple[str, Any]] = []
    try:
        for i, line in enumerate(lines):
            if i == len(lines) - 1:
                if line:
                    raise Malformed("an unterminated line")
                return out, False
            item = json.loads(line)
            if i == n:
                if item != "end" or any(lines[n + 1:]):
                    raise Malformed("output after the last result")
                return out, True
            shaped = type(item) is list and len(item) == 3 and item[0] == i
            if not (shaped and item[1] in ("value", "raised", "unplain")):
                raise Malformed(f"line {i + 1} is not result {i}")
            if item[1] == "value":
                out.append(("value", _from_plain(item[2])))
            elif type(item[2]) is str:
                out.append((item[1], item[2]))
            else:
                raise Malformed(f"line {i + 1} is not result {i}")
    except (ValueError, TypeError, RecursionError) as e:  # json errors are ValueErrors
        raise Malformed(str(e)[:100]) from None
    return out, False


def show(value: Any, n: int = 80) -> str:
    """repr for a detail line, clipped; a huge int or a deep list has no repr to print."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= n else text[:n] + "..."


class CallFailed(Exception):
    def __init__(self, k: int, kind: str, text: str):
        super().__init__(text)
        self.k, self.kind = k, kind


def _guard(op: type, a: Any, b: Any) -> None:
    """Refuse arithmetic whose result would be huge: the operands may come from the program."""
    if op in (ast.Pow, ast.LShift) and type(b) is int and type(a) in (int, bool):
        if b > 1_000_000 or (op is ast.Pow and a not in (0, 1, -1) and a.bit_length() * b > 1_000_000):
            raise OverflowError("too large to evaluate")
    if op is ast.Mult:
        for seq, k in ((a, b), (b, a)):
            if isinstance(seq, (str, bytes, list, tuple)) and type(k) is int and len(seq) * k > 10_000_000:
                raise OverflowError("too large to evaluate")


def evaluate(node: ast.expr, results: list[tuple[str, Any]]) -> Any:
    """The value of a split assert's condition, given what the calls into the program returned."""
    ev = lambda n: evaluate(n, results)  # noqa: E731
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id.startswith(_CALL):
            k = int(node.id[len(_CALL):])
            kind, value = results[k]
            if kind != "value":
                raise CallFailed(k, kind, value)
            return value
        return getattr(builtins, node.id)
    if isinstance(node, ast.Attribute):
        return getattr(math, node.attr)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](ev(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](ev(node.operand))
    if isinstance(node, ast.BinOp):
        a, b = ev(node.left), ev(node.right)
        _guard(type(node.op), a, b)
        return _BIN[type(node.op)](a, b)
    if isinstance(node, ast.BoolOp):
        value = None
        for v in node.values:
            value = ev(v)
            if bool(value) == isinstance(node.op, ast.Or):
                return value
        return value
    if isinstance(node, ast.Compare):
        left = ev(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = ev(right_node)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Subscript):
        return ev(node.value)[ev(node.slice)]
    if isinstance(node, ast.Slice):
        return slice(*(ev(p) if p is not None else None for p in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.Call):
        f = getattr(math, node.func.attr) if isinstance(node.func, ast.Attribute) else getattr(builtins, node.func.id)
        return f(*(ev(a) for a in node.args), **{k.arg: ev(k.value) for k in node.keywords})
    raise AssertionError(f"unsplit node {type(node).__name__}")  # _Splitter never leaves one
