"""The policy text grammar, parsed by recursive descent into ``Policy`` nodes.

    file      := policy*
    policy    := "policy" NAME "{" statement* "}"
    statement := "category" WORD ";"
               | "roles" WORD ("," WORD)* ";"
               | "licence" ("valid" | "any") ";"
               | "hospitals" WORD ("," WORD)* ";"     (Consortium member ids)

v1's ``mask public|fixed`` is gone: in v2 the roles mask is always the request's public
context (the patient's class consent AND the consortium policy); a mask baked into the circuit
would let a read bypass the patient's consent.

``#`` and ``//`` start comments. Example::

    policy lab_read { category lab; roles physician, nurse; licence valid; }
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zk.policy.ast import Policy, PolicyError

_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<comment>(?:#|//)[^\n]*)|(?P<word>[A-Za-z0-9_.\-]+)|(?P<punct>[{};,])"
)


@dataclass(frozen=True)
class Token:
    text: str
    line: int
    col: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise PolicyError(f"line {line} col {pos - line_start + 1}: unexpected {text[pos]!r}")
        if m.lastgroup in ("word", "punct"):
            tokens.append(Token(m.group(), line, pos - line_start + 1))
        for i, ch in enumerate(m.group()):
            if ch == "\n":
                line, line_start = line + 1, pos + i + 1
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def _peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _fail(self, message: str) -> PolicyError:
        tok = self._peek()
        where = f"line {tok.line} col {tok.col}" if tok else "end of input"
        return PolicyError(f"{where}: {message}")

    def _next(self, what: str) -> Token:
        tok = self._peek()
        if tok is None:
            raise self._fail(f"expected {what}")
        self.i += 1
        return tok

    def _expect(self, text: str) -> None:
        tok = self._peek()
        if tok is None or tok.text != text:
            raise self._fail(f"expected {text!r}")
        self.i += 1

    def _word(self, what: str) -> str:
        tok = self._peek()
        if tok is None or tok.text in "{};,":
            raise self._fail(f"expected {what}")
        self.i += 1
        return tok.text

    def _word_list(self, what: str) -> list[str]:
        words = [self._word(what)]
        while self._peek() is not None and self._peek().text == ",":  # type: ignore[union-attr]
            self.i += 1
            words.append(self._word(what))
        self._expect(";")
        return words

    def _choice(self, options: tuple[str, str]) -> str:
        word = self._word(" or ".join(options))
        if word not in options:
            self.i -= 1
            raise self._fail(f"expected {' or '.join(options)}, got {word!r}")
        self._expect(";")
        return word

    def parse_file(self) -> list[Policy]:
        policies = []
        while self._peek() is not None:
            policies.append(self.parse_policy())
        return policies

    def parse_policy(self) -> Policy:
        self._expect("policy")
        name = self._word("a policy name")
        self._expect("{")
        fields: dict[str, object] = {}
        while True:
            tok = self._peek()
            if tok is not None and tok.text == "}":
                self.i += 1
                break
            keyword = self._word("a statement or '}'")
            if keyword in fields:
                self.i -= 1
                raise self._fail(f"{keyword} given twice in policy {name}")
            if keyword == "category":
                fields[keyword] = self._word("a category")
                self._expect(";")
            elif keyword in ("roles", "hospitals"):
                fields[keyword] = self._word_list(keyword[:-1])
            elif keyword == "licence":
                fields[keyword] = self._choice(("valid", "any")) == "valid"
            elif keyword == "mask":
                self.i -= 1
                raise self._fail("'mask' was removed in v2: the mask is the request's context")
            else:
                self.i -= 1
                raise self._fail(f"unknown statement {keyword!r}")
        for required in ("category", "roles"):
            if required not in fields:
                raise PolicyError(f"policy {name}: missing '{required}' statement")
        return Policy(
            name=name,
            category=fields["category"],  # type: ignore[arg-type]
            roles=fields["roles"],  # type: ignore[arg-type]
            licence_valid=fields.get("licence", True),  # type: ignore[arg-type]
            hospitals=fields.get("hospitals"),  # type: ignore[arg-type]
        )


def parse_policies(text: str) -> list[Policy]:
    """Every policy in ``text``, in order."""
    return _Parser(text).parse_file()


def parse_policy(text: str) -> Policy:
    """Exactly one policy."""
    policies = parse_policies(text)
    if len(policies) != 1:
        raise PolicyError(f"expected exactly one policy, found {len(policies)}")
    return policies[0]
