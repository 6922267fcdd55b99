"""``hl7v2``: the hospital HL7 v2 feed (ADT, ORU^R01, MDM^T02) as a SourceAdapter.

HL7 v2.3 - 2.5.1 as UK trusts send it (docs/adapters/hl7v2.md). ``read`` cuts files
into messages and parses them (a message that cannot be parsed is a RecordError with
its file, line and MSH-10); ``map`` turns one message into FHIR R4 resources through
the per-message-type modules (adt.py, results.py, documents.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from adapters.base import (
    MappingContext,
    MappingError,
    RecordError,
    SourceAdapter,
    SourceLocation,
    SourceRecord,
)
from adapters.hl7v2.adt import map_adt
from adapters.hl7v2.builder import MessageBuilder
from adapters.hl7v2.documents import map_mdm
from adapters.hl7v2.parser import Hl7ParseError, Message, RawMessage, parse_message, split_messages
from adapters.hl7v2.results import map_oru

SUFFIXES = {".hl7", ".txt", ".msg", ".er7"}
HANDLERS = {"ADT": map_adt, "ORU": map_oru, "MDM": map_mdm}


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM); Windows-1252 as some interface engines still send."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def message_source_id(msg: Message) -> str:
    """Stable record id: sending facility, MSH-10 control id and message type."""
    return f"{msg.sending_facility or msg.sending_application}|{msg.control_id}|{msg.message_type}"


def record_from_text(text: str, file: str, line: int = 1) -> SourceRecord | RecordError:
    """Parse one message's text into a SourceRecord, or a RecordError with its place."""
    try:
        msg = parse_message(text, first_line=line)
    except Hl7ParseError as exc:
        control = _guess_control_id(text)
        return RecordError(
            location=SourceLocation(file, exc.line or line, control or None),
            reason=f"unparseable HL7 v2 message: {exc.reason}",
            source_id=control or None,
        )
    location = SourceLocation(file, line, msg.control_id or None, msg.message_type)
    if not msg.control_id:
        return RecordError(location, "MSH-10 (message control id) is empty", "MSH-10")
    return SourceRecord(message_source_id(msg), msg.message_type, msg, location)


def _guess_control_id(text: str) -> str:
    first = text.lstrip("\ufeff\x0b").split("\r", 1)[0].split("\n", 1)[0]
    if first.startswith("MSH") and len(first) > 3:
        parts = first.split(first[3])
        if len(parts) > 9:
            return parts[9].split("^")[0]
    return ""


def map_message(msg: Message, ctx: MappingContext, *,
                visit_state: bool = True) -> list[dict[str, Any]]:
    """Map one message. ``visit_state=False``: an ADT whose visit state is superseded
    (a newer message for the same visit was applied): its Encounter (and an A11's
    retraction) is left out, its patient and clinical segments are mapped."""
    handler = HANDLERS.get(msg.message_code)
    if handler is None:
        raise MappingError(
            f"{msg.message_type} messages are not supported (ADT, ORU^R01 and MDM^T02 are)",
            "MSH-9",
        )
    builder = MessageBuilder(msg, ctx, visit_state=visit_state)
    handler(builder)
    return builder.resources()


class Hl7v2Adapter(SourceAdapter):
    name = "hl7v2"
    version = "1.0"
    description = "Hospital HL7 v2 (ADT, ORU^R01, MDM^T02) files; live feeds via `exchange mllp`"
    default_source_system = "hl7v2"
    source_kind = "hospital"

    def read(self, paths: Sequence[Path]) -> Iterator[SourceRecord | RecordError]:
        for path in _files(paths):
            try:
                text = decode(path.read_bytes())
            except OSError as exc:
                yield RecordError(SourceLocation(str(path)), f"cannot read file: {exc}")
                continue
            for item in split_messages(text):
                if isinstance(item, Hl7ParseError):
                    yield RecordError(SourceLocation(str(path), item.line), item.reason)
                    continue
                assert isinstance(item, RawMessage)
                yield record_from_text(item.text, str(path), item.line)

    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        return map_message(record.data, ctx)


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        else:
            yield p
