"""A small, careful HL7 v2 (2.3 - 2.8) message parser.

HL7 v2.5.1 Chapter 2 (Control), sections 2.5 - 2.7:

* a message is a sequence of segments separated by a carriage return; files and
  interface engines also use LF or CR LF, and we accept all three;
* MSH-1 is the field separator (the character right after ``MSH``) and MSH-2 holds the
  component, repetition, escape and subcomponent characters (normally ``^~\\&``; v2.7+
  may add a fifth, the truncation character, which we keep as an ordinary character);
* fields repeat (``~``), repetitions have components (``^``) and components have
  subcomponents (``&``); escape sequences (section 2.7.4: ``\\F\\ \\S\\ \\T\\ \\R\\
  \\E\\ \\Xhh..\\ \\.br\\``, highlighting ``\\H\\ \\N\\``) are resolved *after*
  splitting, so an escaped delimiter never splits a value.

Field numbering follows the standard: ``seg.get(3)`` is PID-3 and for MSH ``get(1)`` is
the field separator itself, ``get(2)`` the encoding characters, ``get(9)`` the message
type. Every accessor returns ``""`` for an absent element instead of raising.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


class Hl7ParseError(ValueError):
    """A message that cannot be parsed; ``line`` is the 1-based line in its source."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


@dataclass
class Segment:
    """One segment: its name, raw fields (index 0 is the name) and its source line."""

    name: str
    fields: list[str]
    delimiters: Delimiters
    line: int = 1

    def _raw(self, n: int) -> str:
        if self.name == "MSH":
            if n == 1:
                return self.delimiters.field
            # fields[1] is MSH-2 (the encoding characters), so MSH-n is fields[n-1]
            idx = n - 1
        else:
            idx = n
        return self.fields[idx] if 0 < idx < len(self.fields) else ""

    def raw(self, n: int) -> str:
        """The raw (unsplit, unescaped) text of field ``n``."""
        return self._raw(n)

    def repetitions(self, n: int) -> list[Field]:
        """Field ``n`` split into its repetitions (an empty field gives ``[]``)."""
        raw = self._raw(n)
        if raw == "":
            return []
        if self.name == "MSH" and n in (1, 2):
            return [Field([[raw]], self.delimiters)]
        d = self.delimiters
        return [
            Field([c.split(d.subcomponent) for c in rep.split(d.component)], d)
            for rep in raw.split(d.repetition)
        ]

    def field(self, n: int, rep: int = 0) -> Field:
        reps = self.repetitions(n)
        return reps[rep] if rep < len(reps) else Field([], self.delimiters)

    def get(self, n: int, comp: int = 1, sub: int = 1, rep: int = 0) -> str:
        """Field ``n``, repetition ``rep`` (0-based), component and subcomponent (1-based)."""
        return self.field(n, rep).get(comp, sub)

    def is_null(self, n: int) -> bool:
        """True for the explicit HL7 null ``""`` (delete the value in the receiver)."""
        return self._raw(n) == '""'

    def __len__(self) -> int:
        return len(self.fields) - 1 + (1 if self.name == "MSH" else 0)


@dataclass
class Field:
    """One repetition of a field: components, each a list of subcomponents (raw)."""

    components: list[list[str]]
    delimiters: Delimiters = field(default_factory=Delimiters)

    def get(self, comp: int = 1, sub: int = 1) -> str:
        if comp < 1 or comp > len(self.components):
            return ""
        subs = self.components[comp - 1]
        if sub < 1 or sub > len(subs):
            return ""
        return unescape(subs[sub - 1], self.delimiters)

    def component(self, comp: int) -> Field:
        """Component ``comp`` as a field of its subcomponents (for nested types)."""
        if comp < 1 or comp > len(self.components):
            return Field([], self.delimiters)
        return Field([[s] for s in self.components[comp - 1]], self.delimiters)

    def is_empty(self) -> bool:
        return all(s == "" for c in self.components for s in c)


@dataclass
class Message:
    """A parsed message: its segments in order plus the header values everyone needs."""

    segments: list[Segment]
    delimiters: Delimiters
    raw: str
    first_line: int = 1

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def control_id(self) -> str:
        return self.msh.get(10)

    @property
    def message_code(self) -> str:
        return self.msh.get(9, 1).upper()

    @property
    def trigger_event(self) -> str:
        return self.msh.get(9, 2).upper()

    @property
    def message_type(self) -> str:
        """E.g. ``ADT^A01`` (the structure, MSH-9.3, is left out)."""
        code, event = self.message_code, self.trigger_event
        return f"{code}^{event}" if event else code

    @property
    def version(self) -> str:
        return self.msh.get(12)

    @property
    def sending_application(self) -> str:
        return self.msh.get(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.get(4)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        for s in self.segments:
            if s.name == name:
                return s
        return None


def unescape(value: str, d: Delimiters) -> str:
    """Resolve HL7 escape sequences (v2.5.1 section 2.7.4) in one primitive value."""
    e = d.escape
    if not e or e not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch != e:
            out.append(ch)
            i += 1
            continue
        end = value.find(e, i + 1)
        if end == -1:  # a lone escape character: keep it literally
            out.append(value[i:])
            break
        seq = value[i + 1 : end]
        out.append(_escape_text(seq, d))
        i = end + 1
    return "".join(out)


def _escape_text(seq: str, d: Delimiters) -> str:
    simple = {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        ".br": "\n",
        "H": "",
        "N": "",
    }
    if seq in simple:
        return simple[seq]
    if seq.startswith("X") and len(seq) > 1:
        hexdigits = seq[1:]
        try:
            return bytes.fromhex(hexdigits).decode("utf-8", errors="replace")
        except ValueError:
            return d.escape + seq + d.escape
    if seq.startswith((".sp", ".in", ".ti", ".sk", ".ce", ".fi", ".nf")):
        # formatting commands of FT data: a line break is the faithful rendering
        return "\n" if seq.startswith((".sp", ".ce")) else ""
    if seq.startswith(("C", "M")):  # character-set switches: the text itself follows
        return ""
    # \Zxx\ (locally defined) and anything unknown: keep it literally, lose nothing
    return d.escape + seq + d.escape


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_message(text: str, first_line: int = 1) -> Message:
    """Parse one message. Raises :class:`Hl7ParseError` with the line of the problem."""
    text = text.lstrip("\ufeff\x0b").rstrip("\x1c\r\n")
    if not text.startswith("MSH"):
        raise Hl7ParseError("a message must begin with an MSH segment", first_line)
    if len(text) < 8:
        raise Hl7ParseError("MSH segment is truncated (no encoding characters)", first_line)
    fs = text[3]
    if fs.isalnum() or fs in " \r\n":
        raise Hl7ParseError(f"MSH-1 field separator {fs!r} is not a valid separator", first_line)
    enc_end = text.find(fs, 4)
    enc = text[4:enc_end] if enc_end != -1 else text[4:]
    if len(enc) < 4 or len(set(enc[:4])) != 4 or fs in enc[:4]:
        raise Hl7ParseError(
            f"MSH-2 encoding characters {enc!r} must be four distinct characters", first_line
        )
    d = Delimiters(field=fs, component=enc[0], repetition=enc[1], escape=enc[2],
                   subcomponent=enc[3])
    segments: list[Segment] = []
    for offset, line in enumerate(_lines(text)):
        if line.strip() == "":
            continue
        line_no = first_line + offset
        name = line[:3]
        if not SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != fs):
            raise Hl7ParseError(f"malformed segment {line[:20]!r} (no valid segment name)",
                                line_no)
        if name == "MSH" and segments:
            raise Hl7ParseError("a second MSH segment inside one message", line_no)
        parts = line.split(fs)
        segments.append(Segment(name=name, fields=parts, delimiters=d, line=line_no))
    msg = Message(segments=segments, delimiters=d, raw=text, first_line=first_line)
    if not msg.message_code:
        raise Hl7ParseError("MSH-9 (message type) is empty", first_line)
    return msg


@dataclass
class RawMessage:
    """One message cut from a stream: its text and the line it starts on."""

    text: str
    line: int


def split_messages(text: str) -> Iterator[RawMessage | Hl7ParseError]:
    """Cut a file or stream into messages at each ``MSH`` segment.

    Handles a UTF-8 byte-order mark, CR / LF / CR LF segment terminators, blank lines
    between messages and MLLP framing characters left in a capture. Text before the
    first MSH is reported as an error, never silently dropped.
    """
    text = text.lstrip("\ufeff")
    current: list[str] = []
    start = 0
    stray_start: int | None = None
    for i, raw_line in enumerate(_lines(text), start=1):
        line = raw_line.strip("\x0b\x1c").lstrip("\ufeff")
        if line.startswith("MSH"):
            if current:
                yield RawMessage("\r".join(current), start)
            current = [line]
            start = i
        elif current:
            # keep blank lines as empty entries so line numbers stay exact
            current.append(line)
        elif line.strip() and stray_start is None:
            stray_start = i
            yield Hl7ParseError(
                f"text before the first MSH segment: {line[:30]!r}", i
            )
    if current:
        yield RawMessage("\r".join(current).rstrip("\r"), start)
