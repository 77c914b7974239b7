"""KQL (Kibana Query Language) subset: tokenizer and recursive-descent parser.

Grammar (keywords case-insensitive; precedence ``not`` > ``and`` > ``or``)::

    query      := or_expr?
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | clause
    clause     := field ":" values | field ("<"|"<="|">"|">=") literal | literal
    values     := "(" value_or ")" | literal          -- value_or mirrors or_expr
    literal    := quoted | unquoted

As in Kibana, an unquoted literal may span several words (``message:hello world`` is one
value), ``*`` in an unquoted literal is a wildcard, and a backslash escapes the next
character. A value list ``field:(a or b)`` is rewritten into ``field:a or field:b`` so the
compiler only sees single-field leaves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

# Characters that end an unquoted word (Kibana's SpecialCharacter minus "*" and "\").
_SPECIAL = frozenset('():<>"{}')
_KEYWORDS = frozenset({"and", "or", "not"})
_ESCAPED_WHITESPACE = {"t": "\t", "r": "\r", "n": "\n"}
_FIELD_RE = re.compile(r"[A-Za-z0-9_@-]+(?:\.[A-Za-z0-9_@-]+)*")
# Parentheses and "not" nest; bounded so deep input is a KQLError, not a RecursionError,
# and the SQL stays well inside DuckDB's expression depth limit.
MAX_DEPTH = 64

RangeOp = Literal["<", "<=", ">", ">="]


class KQLError(ValueError):
    """A query that cannot be parsed or compiled; ``position`` is a 0-based offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


# ---------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Value:
    """A literal; ``pieces`` are the literal texts between wildcards.

    ``a*b`` is ("a", "b"), ``*`` is ("", ""), ``abc`` is ("abc",). Quoted values never
    have wildcards, so they always have exactly one piece.
    """

    pieces: tuple[str, ...]
    quoted: bool
    pos: int

    @property
    def has_wildcard(self) -> bool:
        return len(self.pieces) > 1

    @property
    def text(self) -> str:
        """The value as the user meant it, wildcards shown as ``*`` (for messages)."""
        return "*".join(self.pieces)

    @property
    def is_lone_wildcard(self) -> bool:
        return self.pieces == ("", "")


@dataclass(frozen=True, slots=True)
class Match:
    """``field:value``; ``field`` is None for a bare term searched in the text fields."""

    field: str | None
    value: Value


@dataclass(frozen=True, slots=True)
class Exists:
    field: str
    pos: int


@dataclass(frozen=True, slots=True)
class Range:
    field: str
    op: RangeOp
    value: Value


@dataclass(frozen=True, slots=True)
class MatchAll:
    pass


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


Node = Match | Exists | Range | MatchAll | Not | And | Or


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word" "quoted" "(" ")" ":" "range" "{" "}" "end"
    pos: int
    end: int
    space_before: str  # the whitespace that precedes the token (kept inside multi-word values)
    pieces: tuple[str, ...] = ()  # literal pieces of a word/quoted token, split at wildcards
    escaped: bool = False  # a backslash escape occurred (so "\or" is a word, not a keyword)
    op: str = ""

    @property
    def keyword(self) -> str | None:
        if self.kind != "word" or self.escaped or len(self.pieces) != 1:
            return None
        low = self.pieces[0].lower()
        return low if low in _KEYWORDS else None


def _unicode_escape(text: str, i: int) -> tuple[str, int]:
    """``\\uXXXX`` starting at the backslash ``i``; returns the character and next index."""
    digits = text[i + 2:i + 6]
    if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise KQLError("invalid \\u escape, expected 4 hex digits", i)
    ch = chr(int(digits, 16))
    if 0xD800 <= ord(ch) <= 0xDFFF:
        # A lone surrogate cannot be encoded as UTF-8, so the database could not take it.
        raise KQLError("invalid \\u escape: surrogate code point", i)
    return ch, i + 6


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Body of a quoted string whose opening quote is at ``start``; returns (body, end)."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in '"\\':
                out.append(nxt)
                i += 2
                continue
            if nxt in _ESCAPED_WHITESPACE:
                out.append(_ESCAPED_WHITESPACE[nxt])
                i += 2
                continue
            if nxt == "u":
                ch, i = _unicode_escape(text, i)
                out.append(ch)
                continue
        # Kibana keeps any other backslash literally inside quotes.
        out.append(c)
        i += 1
    raise KQLError("unterminated quoted string", start)


def _read_word(text: str, start: int) -> tuple[tuple[str, ...], bool, int]:
    """An unquoted word: (pieces split at wildcards, had escapes, end index)."""
    pieces: list[str] = []
    cur: list[str] = []
    escaped = False
    i = start
    while i < len(text):
        c = text[i]
        if c.isspace() or c in _SPECIAL:
            break
        if c == "*":
            pieces.append("".join(cur))
            cur = []
            i += 1
        elif c == "\\":
            if i + 1 >= len(text):
                raise KQLError("backslash at end of query escapes nothing", i)
            escaped = True
            nxt = text[i + 1]
            if nxt == "u":
                ch, i = _unicode_escape(text, i)
                cur.append(ch)
            else:
                cur.append(_ESCAPED_WHITESPACE.get(nxt, nxt))
                i += 2
        else:
            cur.append(c)
            i += 1
    pieces.append("".join(cur))
    return tuple(pieces), escaped, i


def _check_encodable(text: str) -> None:
    """Reject lone surrogates up front: no database driver can encode them."""
    for i, c in enumerate(text):
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise KQLError("query contains an invalid character (lone surrogate)", i)


def tokenize(text: str) -> list[Token]:
    _check_encodable(text)
    tokens: list[Token] = []
    i = 0
    while True:
        ws_start = i
        while i < len(text) and text[i].isspace():
            i += 1
        space = text[ws_start:i]
        if i >= len(text):
            tokens.append(Token("end", i, i, space))
            return tokens
        c = text[i]
        if c in "():{}":
            tokens.append(Token(c, i, i + 1, space))
            i += 1
        elif c in "<>":
            op = c + "=" if text.startswith("=", i + 1) else c
            tokens.append(Token("range", i, i + len(op), space, op=op))
            i += len(op)
        elif c == '"':
            body, end = _read_quoted(text, i)
            tokens.append(Token("quoted", i, end, space, pieces=(body,)))
            i = end
        else:
            pieces, escaped, end = _read_word(text, i)
            tokens.append(Token("word", i, end, space, pieces=pieces, escaped=escaped))
            i = end


# ---------------------------------------------------------------- parser


def _join_words(words: list[Token]) -> tuple[str, ...]:
    """Merge consecutive words into one value, keeping the whitespace between them."""
    pieces = list(words[0].pieces)
    for w in words[1:]:
        pieces[-1] += w.space_before + w.pieces[0]
        pieces.extend(w.pieces[1:])
    return tuple(pieces)


def _describe(tok: Token, text: str) -> str:
    return "end of query" if tok.kind == "end" else repr(text[tok.pos:tok.end])


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- token helpers

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def advance(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def at_keyword(self, word: str) -> bool:
        return self.tok.keyword == word

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}")
        return self.advance()

    def error(self, message: str) -> KQLError:
        return KQLError(f"{message}, got {_describe(self.tok, self.text)}", self.tok.pos)

    # -- grammar

    def parse(self) -> Node | None:
        if self.tok.kind == "end":
            return None
        node = self.or_expr(None)
        if self.tok.kind != "end":
            raise self.error("expected 'and', 'or' or end of query")
        return node

    def or_expr(self, field: str | None) -> Node:
        items = [self.and_expr(field)]
        while self.at_keyword("or"):
            self.advance()
            items.append(self.and_expr(field))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self, field: str | None) -> Node:
        items = [self.not_expr(field)]
        while self.at_keyword("and"):
            self.advance()
            items.append(self.not_expr(field))
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self, field: str | None) -> Node:
        self.depth += 1
        try:
            return self.nested(field)
        finally:
            self.depth -= 1

    def nested(self, field: str | None) -> Node:
        if self.depth > MAX_DEPTH:
            raise KQLError(f"query nested more than {MAX_DEPTH} levels deep", self.tok.pos)
        if self.at_keyword("not"):
            self.advance()
            return Not(self.not_expr(field))
        if self.tok.kind == "(":
            self.advance()
            node = self.or_expr(field)
            self.expect(")", "')'")
            return node
        if field is not None:
            return self.field_value(field, self.literal("a value"))
        return self.clause()

    def clause(self) -> Node:
        first = self.tok
        value = self.literal("a field, a value or '('")
        if self.tok.kind == ":":
            name = self.field_name(value, first.pos)
            self.advance()
            if self.tok.kind == "{":
                raise KQLError("nested field queries ({...}) are not supported", self.tok.pos)
            if self.tok.kind == "(":
                self.advance()
                node = self.or_expr(name)
                self.expect(")", "')' closing the value list")
                return node
            return self.field_value(name, self.literal(f"a value for {name}"))
        if self.tok.kind == "range":
            name = self.field_name(value, first.pos)
            op = self.advance().op
            bound = self.literal(f"a value after {op}")
            if bound.has_wildcard:
                raise KQLError("wildcards are not allowed in range values", bound.pos)
            return Range(name, cast(RangeOp, op), bound)
        if value.is_lone_wildcard:
            return MatchAll()
        return Match(None, value)

    def field_value(self, field: str, value: Value) -> Node:
        if value.is_lone_wildcard:
            return Exists(field, value.pos)
        return Match(field, value)

    def field_name(self, value: Value, pos: int) -> str:
        if value.has_wildcard:
            raise KQLError("wildcards in field names are not supported", pos)
        name = value.pieces[0]
        if not _FIELD_RE.fullmatch(name):
            raise KQLError(
                f"invalid field name {name!r} (letters, digits, _ . @ - allowed)", pos
            )
        return name

    def literal(self, what: str) -> Value:
        tok = self.tok
        if tok.kind == "quoted":
            self.advance()
            return Value(tok.pieces, True, tok.pos)
        if tok.kind != "word" or tok.keyword is not None:
            raise self.error(f"expected {what}")
        words = [self.advance()]
        # Kibana: an unquoted value runs on across spaces until a keyword or special char.
        while self.tok.kind == "word" and self.tok.keyword is None:
            words.append(self.advance())
        return Value(_join_words(words), False, tok.pos)


def parse(text: str) -> Node | None:
    """Parse a KQL query; None for an empty (match everything) query."""
    return _Parser(text).parse()
