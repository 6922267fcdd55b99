"""A small, fast FHIRPath evaluator for R4 SearchParameter expressions.

Implements the subset of FHIRPath (http://hl7.org/fhirpath/N1/) that the official R4
SearchParameter definitions use (FHIR R4 searchparameter.html, "expression"): member
paths over FHIR JSON (choice elements ``value[x]`` resolved by name), ``|`` unions,
``and`` / ``or``, ``=`` / ``!=``, ``is`` / ``as`` (operator and function form),
``ofType()``, ``where()``, ``resolve()`` (only as ``resolve() is Type``, decided from
the reference text since the index never dereferences), ``exists()``, ``empty()``,
``first()``, ``not()``, ``extension(url)``, ``hasExtension(url)`` and ``[n]`` indexers.

Each expression is parsed once and compiled to nested Python closures working on
lists of JSON values, so extraction on the write path costs microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Fn = Callable[[list[Any]], list[Any]]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<bq>`[^`]*`)|(?P<op>!=|<=|>=|[().,\[\]|=<>]))"
)

#: FHIR data type names that may follow a choice element's name in JSON (value[x]).
CHOICE_SUFFIXES = frozenset(
    ["Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant", "Integer", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri", "Url", "Uuid", "Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactPoint", "Count", "Distance", "Duration", "HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio", "Reference", "SampledData", "Signature", "Timing", "ContactDetail", "Contributor", "DataRequirement", "Expression", "ParameterDefinition", "RelatedArtifact", "TriggerDefinition", "UsageContext", "Dosage", "Meta"]
)


class FhirPathError(ValueError):
    """The expression uses syntax or functions outside the supported subset."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FhirPathError(f"cannot parse FHIRPath at {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        val = m.group(kind)
        if kind in ("bq", "str"):
            kind, val = ("id" if kind == "bq" else "str"), val[1:-1].replace("\\'", "'")
        out.append((kind, val))
    return out


class _Parser:
    """Recursive descent over FHIRPath precedence: or < and < = != < | < is/as < term."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, val: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (val is not None and tok[1] != val):
            raise FhirPathError(f"expected {val!r}, got {tok!r}")
        self.i += 1
        return tok

    def at(self, *vals: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[1] in vals and tok[0] in ("op", "id")

    def parse(self) -> tuple:
        node = self.expr()
        if self.peek() is not None:
            raise FhirPathError(f"unexpected {self.peek()!r}")
        return node

    def expr(self) -> tuple:
        node = self.and_expr()
        while self.at("or"):
            self.take()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self) -> tuple:
        node = self.eq_expr()
        while self.at("and"):
            self.take()
            node = ("and", node, self.eq_expr())
        return node

    def eq_expr(self) -> tuple:
        node = self.union_expr()
        while self.at("=", "!="):
            op = self.take()[1]
            node = ("eq" if op == "=" else "ne", node, self.union_expr())
        return node

    def union_expr(self) -> tuple:
        node = self.type_expr()
        while self.at("|"):
            self.take()
            node = ("union", node, self.type_expr())
        return node

    def type_expr(self) -> tuple:
        node = self.term()
        while self.at("is", "as"):
            op = self.take()[1]
            node = (op, node, self.take()[1])
        return node

    def term(self) -> tuple:
        tok = self.take()
        if tok[1] == "(" and tok[0] == "op":
            node = self.expr()
            self.take(")")
        elif tok[0] == "str":
            node = ("lit", tok[1])
        elif tok[0] == "num":
            node = ("lit", float(tok[1]) if "." in tok[1] else int(tok[1]))
        elif tok[0] == "id" and tok[1] in ("true", "false"):
            node = ("lit", tok[1] == "true")
        elif tok[0] == "id" and tok[1] == "$this":
            node = ("this",)
        elif tok[0] == "id":
            node = self.call_or_member(None, tok[1], first=True)
        else:
            raise FhirPathError(f"unexpected {tok!r}")
        while True:
            if self.at("."):
                self.take()
                node = self.call_or_member(node, self.take()[1], first=False)
            elif self.at("["):
                self.take()
                node = ("index", node, self.expr())
                self.take("]")
            else:
                return node

    def call_or_member(self, base: tuple | None, name: str, *, first: bool) -> tuple:
        if self.at("("):
            self.take()
            args: list[tuple] = []
            while not self.at(")"):
                args.append(self.expr())
                if self.at(","):
                    self.take()
            self.take(")")
            return ("call", base, name, args)
        if first and name[:1].isupper():
            return ("type", name)
        return ("member", base, name)


def parse(text: str) -> tuple:
    return _Parser(text).parse()


# --- evaluation helpers -------------------------------------------------------------


def _flat(out: list[Any], v: Any) -> None:
    if isinstance(v, list):
        out.extend(x for x in v if x is not None)
    elif v is not None:
        out.append(v)


def _child(name: str) -> Fn:
    n = len(name)

    def step(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for node in nodes:
            if not isinstance(node, dict):
                continue
            v = node.get(name)
            if v is not None:
                _flat(out, v)
                continue
            for k, v in node.items():  # choice element: name + TypeName
                if len(k) > n and k.startswith(name) and k[n:] in CHOICE_SUFFIXES:
                    _flat(out, v)
        return out

    return step


def _exact_child(key: str) -> Fn:
    def step(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for node in nodes:
            if isinstance(node, dict):
                _flat(out, node.get(key))
        return out

    return step


class ResolvedRef:
    """What ``resolve()`` yields: the type a reference points at (never dereferenced)."""

    __slots__ = ("type",)

    def __init__(self, type_: str | None) -> None:
        self.type = type_


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference (dict) or reference string points at, if known."""
    if isinstance(ref, dict):
        if ref.get("type"):
            return str(ref["type"])
        ref = ref.get("reference")
    if not isinstance(ref, str) or not ref or ref.startswith("#") or ref.startswith("urn:"):
        return None
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2] if len(parts) >= 2 and parts[-2][:1].isupper() else None


def _is_type(node: Any, type_name: str) -> bool:
    if isinstance(node, ResolvedRef):
        return node.type == type_name
    if isinstance(node, dict):
        return node.get("resourceType") == type_name
    return False


def _truthy(vals: list[Any]) -> bool:
    return bool(vals) and vals != [False]


# --- compilation ------------------------------------------------------------------


def compile_expr(node: tuple) -> Fn:  # noqa: C901 - a dispatcher over node kinds
    """Compile an AST to a function: list of context nodes -> list of result nodes."""
    kind = node[0]
    if kind == "type":  # leading type name: filters the context (Resource matches all)
        name = node[1]
        if name in ("Resource", "DomainResource"):
            return lambda nodes: nodes
        return lambda nodes: [n for n in nodes if isinstance(n, dict) and n.get("resourceType") == name]
    if kind == "this":
        return lambda nodes: nodes
    if kind == "lit":
        val = node[1]
        return lambda nodes: [val]
    if kind == "member":
        return _chain(node[1], _child(node[2]))
    if kind == "index":
        base = compile_expr(node[1])
        idx_fn = compile_expr(node[2])

        def index(nodes: list[Any]) -> list[Any]:
            got = base(nodes)
            idx = idx_fn(nodes)
            i = idx[0] if idx else 0
            return [got[i]] if isinstance(i, int) and 0 <= i < len(got) else []

        return index
    if kind == "union":
        a, b = compile_expr(node[1]), compile_expr(node[2])

        def union(nodes: list[Any]) -> list[Any]:
            out = a(nodes)
            for v in b(nodes):
                if not any(v is o or v == o for o in out):
                    out.append(v)
            return out

        return union
    if kind in ("and", "or"):
        a, b = compile_expr(node[1]), compile_expr(node[2])
        if kind == "and":
            return lambda nodes: [_truthy(a(nodes)) and _truthy(b(nodes))]
        return lambda nodes: [_truthy(a(nodes)) or _truthy(b(nodes))]
    if kind in ("eq", "ne"):
        a, b = compile_expr(node[1]), compile_expr(node[2])
        if kind == "eq":
            return lambda nodes: _eq(a(nodes), b(nodes))
        return lambda nodes: [not x for x in _eq(a(nodes), b(nodes))]
    if kind == "is":
        a, tname = compile_expr(node[1]), node[2]
        return lambda nodes: [all(_is_type(v, tname) for v in a(nodes))] if a(nodes) else []
    if kind == "as":
        return _as(node[1], node[2])
    if kind == "call":
        return _call(node)
    raise FhirPathError(f"unsupported node {kind}")


def _eq(left: list[Any], right: list[Any]) -> list[bool]:
    return [left == right] if left and right else []


def _chain(base: tuple | None, step: Fn) -> Fn:
    if base is None:
        return step
    first = compile_expr(base)
    return lambda nodes: step(first(nodes))


def _as(base: tuple, type_name: str) -> Fn:
    """``x as T``: a choice element named x holding type T is stored as key xT."""
    if base[0] == "member":
        return _chain(base[1], _exact_child(base[2] + type_name[:1].upper() + type_name[1:]))
    inner = compile_expr(base)
    return lambda nodes: [v for v in inner(nodes) if _is_type(v, type_name)]


def _type_arg(arg: tuple) -> str:
    if arg[0] == "type":
        return arg[1]
    if arg[0] == "member" and arg[1] is None:
        return arg[2]
    raise FhirPathError(f"expected a type name, got {arg!r}")


def _call(node: tuple) -> Fn:
    _, base, name, args = node
    if name in ("as", "ofType") and base is not None:
        return _as(base, _type_arg(args[0]))
    if name == "is":
        return compile_expr(("is", base or ("this",), _type_arg(args[0])))
    if name == "where":
        cond = compile_expr(args[0])
        return _chain(base, lambda nodes: [n for n in nodes if _truthy(cond([n]))])
    if name == "resolve":
        return _chain(base, lambda nodes: [ResolvedRef(reference_type(n)) for n in nodes])
    if name == "exists":
        if args:
            cond = compile_expr(args[0])
            return _chain(base, lambda nodes: [any(_truthy(cond([n])) for n in nodes)])
        return _chain(base, lambda nodes: [bool(nodes)])
    if name == "empty":
        return _chain(base, lambda nodes: [not nodes])
    if name == "not":
        return _chain(base, lambda nodes: [not _truthy(nodes)] if nodes else [])
    if name == "first":
        return _chain(base, lambda nodes: nodes[:1])
    if name in ("extension", "hasExtension"):
        url = args[0][1] if args and args[0][0] == "lit" else None
        if url is None:
            raise FhirPathError(f"{name}() needs a literal url")

        def ext(nodes: list[Any]) -> list[Any]:
            out: list[Any] = []
            for n in nodes:
                if isinstance(n, dict):
                    out.extend(e for e in n.get("extension") or () if isinstance(e, dict) and e.get("url") == url)
            return out

        if name == "hasExtension":
            return _chain(base, lambda nodes: [bool(ext(nodes))])
        return _chain(base, ext)
    raise FhirPathError(f"unsupported function {name}()")


def split_union(node: tuple) -> list[tuple]:
    """The top-level branches of a ``|`` union (to prune branches for other types)."""
    if node[0] == "union":
        return split_union(node[1]) + split_union(node[2])
    return [node]


def root_type(node: tuple) -> str | None:
    """The leading type name of a path expression (``Observation`` in Observation.code)."""
    while node[0] in ("member", "call", "index", "as", "is"):
        nxt = node[1]
        if nxt is None:
            return None
        node = nxt
    return node[1] if node[0] == "type" else None


def compile_for_type(text: str, resource_type: str) -> Fn | None:
    """Compile ``text`` keeping only the union branches that apply to ``resource_type``.

    Returns None when no branch applies."""
    branches = [
        b for b in split_union(parse(text))
        if root_type(b) in (None, resource_type, "Resource", "DomainResource")
    ]
    if not branches:
        return None
    node = branches[0]
    for b in branches[1:]:
        node = ("union", node, b)
    fn = compile_expr(node)
    return lambda resource: fn([resource])


#: functions whose result is empty whenever their input is empty (so a branch built on
#: them selects nothing from a resource that lacks the branch's first element)
_EMPTY_IN_EMPTY_OUT = frozenset({"where", "resolve", "first", "as", "ofType", "extension"})


def _first_elements(node: tuple) -> frozenset[str] | None:
    """The top-level element names a path can start from, or None when it may select
    something even if the resource has none of them (literals, ``exists()``, ``and``)."""
    kind = node[0]
    if kind == "union":
        a, b = _first_elements(node[1]), _first_elements(node[2])
        return None if a is None or b is None else a | b
    if kind == "member":
        base = node[1]
        if base is None or base[0] == "type":
            return frozenset({node[2]})
        return _first_elements(base)
    if kind in ("index", "as", "is"):
        return _first_elements(node[1])
    if kind == "call" and node[2] in _EMPTY_IN_EMPTY_OUT:
        base = node[1]
        if base is None or base[0] == "type":
            return frozenset({"extension"}) if node[2] == "extension" else None
        return _first_elements(base)
    return None


def first_elements(text: str, resource_type: str) -> frozenset[str] | None:
    """Top-level JSON element names (choice elements by their name without type suffix,
    e.g. ``value`` for ``valueQuantity``) of which a resource of ``resource_type`` must
    have at least one for ``text`` (as :func:`compile_for_type` compiles it) to select
    anything; None when that cannot be known from the expression.

    Lets the indexer skip, without evaluating, the many parameters whose paths cannot
    exist in a given resource (FHIRPath N1 §5.1: navigating a missing element yields
    the empty collection, and these functions and operators map empty to empty)."""
    branches = [
        b for b in split_union(parse(text))
        if root_type(b) in (None, resource_type, "Resource", "DomainResource")
    ]
    out: frozenset[str] = frozenset()
    for b in branches:
        names = _first_elements(b)
        if names is None:
            return None
        out |= names
    return out


def element_names(key: str) -> tuple[str, ...]:
    """The names a JSON key answers to in a member step (as ``_child`` matches): itself
    and, for a choice element, its name without each type suffix it ends with
    (``valueDateTime``: ``value`` and ``valueDate``)."""
    return (key, *(key[:i] for i in range(1, len(key)) if key[i].isupper() and key[i:] in CHOICE_SUFFIXES))
