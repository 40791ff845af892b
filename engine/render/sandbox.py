"""The Jinja2 sandbox, bounded: no template operation may build a huge value or loop without end.

The watchdog of `engine/render/limits.py` stops Python-level work at the deadline, but a single
C-level operation (`'a' * 10**10`, `7 ** 10**9`, `'x'.center(10**9)`) cannot be interrupted and
can take the memory of the machine first. So every operation that can multiply a size is checked
*before* it runs, against `RenderLimits.value` (characters or items) and `int_bits`:

* the operators `*`, `**`, `+` and `%` (intercepted; `~` is checked by the code generator);
* calls of string methods (`center`, `replace`, `join`, `expandtabs`, …) and `str.format` widths;
* the filters that pad, repeat or join (`center`, `indent`, `wordwrap`, `replace`, `join`,
  `format`, `batch`, `slice`, `tojson`, `sum`) and every filter that turns a container into text;
* every `{{ … }}` that would print a container (through `finalize`).

`{% for %}` loops draw on the per-message iteration budget and `range()` has its own limit.
Intercepted operators are never folded at compile time, so a literal `'a' * 10**9` costs
nothing until it runs (and then fails).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from functools import update_wrapper, wraps
from itertools import chain
from string import Formatter
from types import BuiltinMethodType, MethodType
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import _PassArg
from markupsafe import Markup

from engine.render.limits import LimitExceeded, counted, current_limits

_SEQUENCES = (str, bytes, list, tuple)
_CONTAINERS = (list, tuple, set, frozenset, dict)
_MAX_JSON_INDENT = 16


def text_size(value: Any, limit: int, strings_only: bool = False) -> int:
    """How many characters `str(value)` may take, counted until it passes `limit`: strings by
    their length, containers by their items (a list of the same 4 MB string a thousand times is
    4 GB of text once printed). `strings_only`: the characters of the strings inside, nothing else."""
    if isinstance(value, str):
        return len(value)
    quotes, brackets, other = (0, 0, 0) if strings_only else (4, 2, 8)  # `'…', `, `[]`, a number
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + quotes
        elif isinstance(item, list | tuple | set | frozenset):
            total += brackets
            stack.extend(item)
        elif isinstance(item, dict):
            total += brackets
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += other
    return total


def _n(number: int) -> str:
    """A count for a message: `50,000,000`; a number too long to print stays readable."""
    return f"{number:,}" if number < 10**15 else f"more than {10**15:,}"


def _over(what: str, size: int, unit: str = "characters") -> None:
    limit = current_limits().value
    if size > limit:
        raise LimitExceeded(f"{what} would build {_n(size)} {unit}, over the limit of {limit:,} {unit}")


def joined(join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
    """`a ~ b ~ …`: every operand measured before the join (one printed list could be huge)."""
    limit = current_limits().value
    size = 0
    for part in parts:
        size += len(part) if isinstance(part, str) else text_size(part, limit)
    _over("'~'", size)
    return join(parts)


def _finalize(value: Any) -> Any:
    """Every `{{ … }}` output: strings go through the output budget as they stream; a container
    is measured before `str()` turns it into one string."""
    if type(value) is str or not isinstance(value, _CONTAINERS):
        return value
    _over(f"printing a {type(value).__name__}", text_size(value, current_limits().value))
    return value


# printf widths and precisions: after `%` and its flags, or after a mapping key's `)` (keys may
# nest parentheses). Possessive, and no scan past the digits: the format string may be hostile.
_PRINTF_WIDTH = re.compile(r"[%)][-#0 +]*+(\d*+)(?:\.(\d++))?")
_PRINTF_STAR = re.compile(r"[%)][-#0 +]*+(?:\d*+\.)?\*")  # a width taken from the arguments
_DIGITS = re.compile(r"\d+")


def check_printf(fmt: str, args: Any) -> None:
    """`fmt % args`: refuse widths over the limit and results that would be over it."""
    limit = current_limits().value
    values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, tuple) else [args]
    widths = [int(n) for pair in _PRINTF_WIDTH.findall(fmt) for n in pair if n]
    if _PRINTF_STAR.search(fmt):
        widths += [v for v in values if isinstance(v, int)]
    widest = max(widths, default=0)
    if widest > limit:
        raise LimitExceeded(f"a format width of {_n(widest)} is over the limit of {limit:,} characters")
    each = max((text_size(v, limit) for v in values), default=0)
    _over("'%' formatting", len(fmt) + fmt.count("%") * (each + widest))


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left <operator> right` if its result would be over the limits (before computing it)."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):  # numbers first: the common case
            _bits("'*'", left.bit_length() + right.bit_length(), current_limits().int_bits)
            return
        limits = current_limits()
        if isinstance(right, _SEQUENCES) and isinstance(left, int):
            left, right = right, left
        if isinstance(left, _SEQUENCES) and isinstance(right, int):
            times = max(right, 0)
            if isinstance(left, str | bytes):
                _over("'*'", len(left) * times)
            else:
                _over("'*'", len(left) * times, "items")
                # The strings inside count too: printing `[s] * 1000` copies s a thousand times.
                _over("'*'", text_size(left, limits.value, strings_only=True) * times)
    elif operator == "**":
        limits = current_limits()
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            # |left| >= 2: at least `right` bits (and no float overflow for a huge exponent).
            _bits("'**'", right if right > limits.int_bits else int(math.log2(abs(left)) * right) + 1, limits.int_bits)
    elif operator == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _over("'+'", len(left) + len(right), "characters" if isinstance(left, str | bytes) else "items")
    elif operator == "%" and isinstance(left, str):
        check_printf(left, right)


def _bits(what: str, bits: int, limit: int) -> None:
    if bits > limit:
        raise LimitExceeded(f"{what} would build a number of {_n(bits)} bits, over the limit of {limit:,} bits")


def _range(*args: int) -> range:
    """`range()` for templates: at most `RenderLimits.range` items."""
    items = range(*args)
    limit = current_limits().range
    if len(items) > limit:
        raise LimitExceeded(f"range() of {_n(len(items))} items, over the limit of {limit:,}")
    return items


def _replaced(what: str, s: str | bytes, old: Any, new: Any, count: Any) -> None:
    if not isinstance(s, bytes):
        old, new = str(old), str(new)
    elif not isinstance(old, bytes | bytearray) or not isinstance(new, bytes | bytearray):
        return  # bytes.replace() refuses other types itself
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _over(what, len(s) + found * max(0, len(new) - len(old)))


def _joined(what: str, items: str | list[Any], sep: str) -> None:
    if isinstance(items, str):
        _over(what, len(items) * (1 + len(sep)))
    else:
        _over(what, text_size(items, current_limits().value) + max(0, len(items) - 1) * len(sep))


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """A string's (or number's) method called from a template: its size arguments and its result."""
    limit = current_limits().value
    for arg in chain(args, kwargs.values()):
        if isinstance(arg, int) and arg > limit:  # a width, a tab size, to_bytes' length
            raise LimitExceeded(f"'{method.__name__}()' with {_n(arg)}, over the limit of {limit:,} characters")
    owner, name = method.__self__, method.__name__
    if isinstance(owner, str | bytes):
        if name == "replace" and len(args) >= 2:
            _replaced("'replace()'", owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
        elif name == "translate" and args and isinstance(args[0], dict):
            # Each character may become a string of any length: the longest bounds the result.
            longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
            _over("'translate()'", len(owner) * max(longest, 1))
        elif name == "join" and args and isinstance(owner, str):
            items = args[0] if isinstance(args[0], str) else list(args[0])  # a generator is read once
            _joined("'join()'", items, owner)
            return (items, *args[1:])
        elif name == "join" and args and isinstance(owner, bytes):
            parts = list(args[0])
            _over("'join()'", sum(len(p) for p in parts if isinstance(p, bytes | bytearray)) + len(parts) * len(owner))
            return (parts, *args[1:])
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            tabs = owner.count(b"\t") if isinstance(owner, bytes) else owner.count("\t")
            _over("'expandtabs()'", len(owner) + tabs * max(int(size), 0))
    return args


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


# Filters whose argument is the size of what they build (padding, fill, one list per slice).
_SIZE_ARGUMENT = {"center": "width", "batch": "linecount", "slice": "slices"}
# Filters that turn their value into text: a container is measured first.
_TEXT_FILTERS = frozenset(
    {
        *("capitalize", "center", "e", "escape", "forceescape", "format", "indent", "join", "lower", "pprint"),
        *("replace", "safe", "string", "striptags", "title", "tojson", "trim", "truncate", "upper"),
        *("urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"),
    }
)


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Refuse a filter call whose result would be over the limits; returns the value to pass on."""
    limit = current_limits().value
    what = f"the '{name}' filter"
    if name in _TEXT_FILTERS and not isinstance(value, str):
        if name == "join" and not isinstance(value, list | tuple):
            value = list(value)  # a generator (map, select) is read once: measure the list
        if isinstance(value, list | tuple | set | frozenset | dict):
            _over(what, text_size(value, limit))
    text = value if isinstance(value, str) else ""
    if name in _SIZE_ARGUMENT:
        width = _arg(args, kwargs, 0, _SIZE_ARGUMENT[name], 0)
        if isinstance(width, int) and width > limit:
            raise LimitExceeded(f"{what} with {_n(width)}, over the limit of {limit:,} characters")
    if name == "indent":
        width = _arg(args, kwargs, 0, "width", 4)
        unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _over(what, len(text) + (text.count("\n") + 1) * unit)
    elif name == "wordwrap":
        wrap = _arg(args, kwargs, 2, "wrapstring", None) or "\n"
        _over(what, len(text) * (1 + len(str(wrap))))
    elif name == "replace":
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        _replaced(what, text, old, new, _arg(args, kwargs, 2, "count", None))
    elif name == "join":
        _joined(what, value if isinstance(value, str | list) else list(value), str(_arg(args, kwargs, 0, "d", "")))
    elif name == "format":
        check_printf(text, kwargs or args)
    elif name == "tojson":
        indent = _arg(args, kwargs, 0, "indent", None)
        if (len(indent) if isinstance(indent, str) else indent or 0) > _MAX_JSON_INDENT:
            raise LimitExceeded(f"{what} with an indent of {indent!r}, over the limit of {_MAX_JSON_INDENT}")
    elif name == "sum" and isinstance(_arg(args, kwargs, 1, "start", 0), _SEQUENCES):
        # Adding sequences copies the running total each time: quadratic, in one C call.
        items = list(value)
        total = text_size(items, limit)
        _over(what, total)
        _over(what + " (adding sequences one by one)", len(items) * total // 50)
        value = items
    return value


# Filters that can build more than they are given, checked on every call.
_AMPLIFYING = frozenset({*_SIZE_ARGUMENT, "indent", "wordwrap", "replace", "join", "format", "tojson", "sum"})


def _guard(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` (a filter) with its size checks first. Only the filters that can amplify a size,
    or print a container, pay for a check: `upper` on a string costs one isinstance."""
    leading = 1 if _PassArg.from_obj(func) is not None else 0
    if name not in _AMPLIFYING and name not in _TEXT_FILTERS:
        return func

    amplifying = name in _AMPLIFYING

    @wraps(func)  # keeps `jinja_pass_arg`: Jinja passes the same arguments
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > leading and (amplifying or isinstance(args[leading], _CONTAINERS)):
            value = _check_filter(name, args[leading], args[leading + 1 :], kwargs)
            args = (*args[:leading], value, *args[leading + 1 :])
        return func(*args, **kwargs)

    return guarded


class _SizedFields(Formatter):
    """`str.format`: no field wider than the limit, no result over it."""

    _total = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._total = 0
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        limit = current_limits().value
        widest = max((int(n) for n in _DIGITS.findall(format_spec)), default=0)
        if widest > limit:
            raise LimitExceeded(f"a format width of {_n(widest)} is over the limit of {limit:,} characters")
        _over("'format()'", self._total + text_size(value, limit) + widest)
        field = super().format_field(value, format_spec)
        self._total += len(field)
        return field


class _Formatter(_SizedFields, SandboxedFormatter):
    pass


class _EscapeFormatter(_SizedFields, SandboxedEscapeFormatter):
    pass


COUNTED = "touchflow_counted"
"""The filter every `{% for %}` iterable goes through: it draws on the iteration budget. (Jinja
allows no custom node types, so the code generator inserts a filter node.)"""


class _CodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        # Before any analysis of the tree: the filters' dependencies are collected from it.
        for loop in node.find_all(nodes.For):
            if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == COUNTED):
                loop.iter = nodes.Filter(loop.iter, COUNTED, [], [], None, None, lineno=loop.iter.lineno)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja's own, with the operands measured first (`~` doubling in a loop).
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.joined({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with the size checks above; budgets come from the render's scope."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator
    joined = staticmethod(joined)  # `~`, from the generated code

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.globals["range"] = _range
        self.filters = {name: _guard(name, func) for name, func in self.filters.items()}
        self.filters[COUNTED] = counted

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """The intercepted operators, refused when their result would be too big."""
        check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call from a template; string methods have their sizes checked first."""
        if isinstance(__obj, BuiltinMethodType | MethodType) and isinstance(
            getattr(__obj, "__self__", None), str | bytes | int
        ):
            args = _check_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` / `format_map` through a formatter that checks widths and sizes."""
        if not isinstance(value, MethodType | BuiltinMethodType) or value.__name__ not in ("format", "format_map"):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        formatter = _EscapeFormatter(self, escape=owner.escape) if isinstance(owner, Markup) else _Formatter(self)
        is_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                kwargs, args = args[0], ()
            return type(owner)(formatter.vformat(owner, args, kwargs))

        return update_wrapper(wrapper, value)


def static_limit_problems(ast: nodes.Template) -> list[tuple[int, str]]:
    """What a template's literals already show to be over the default limits: `range(10**6)`,
    nested literal ranges, `'a' * 50000000` (the runtime catches the rest)."""
    limits = current_limits()
    found: list[tuple[int, str]] = []

    def literal_range(node: nodes.Node) -> int | None:
        if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range"):
            return None
        values = [a.value for a in node.args if isinstance(a, nodes.Const)]
        if node.kwargs or len(values) != len(node.args) or not all(type(v) is int for v in values):
            return None
        try:
            return len(range(*values))
        except (ValueError, TypeError, OverflowError):
            return None

    def walk(node: nodes.Node, runs: int) -> None:
        for child in node.iter_child_nodes():
            inner = runs
            if isinstance(child, nodes.For):
                count = literal_range(child.iter)
                if count is not None:
                    inner = runs * count
                    if inner > limits.iterations >= runs and count <= limits.range:
                        message = f"nested loops run {_n(inner)} iterations, over the limit of {limits.iterations:,}"
                        found.append((child.lineno, message + " per message"))
            walk(child, inner)

    for call in ast.find_all(nodes.Call):
        count = literal_range(call)
        if count is not None and count > limits.range:
            found.append((call.lineno, f"range() of {_n(count)} items, over the limit of {limits.range:,}"))
    for op in ast.find_all(nodes.BinExpr):
        if isinstance(op.left, nodes.Const) and isinstance(op.right, nodes.Const):
            try:
                check_binop(op.operator, op.left.value, op.right.value)
            except LimitExceeded as exc:
                found.append((op.lineno, str(exc)))
            except Exception:
                pass
    walk(ast, 1)
    return sorted(found)
