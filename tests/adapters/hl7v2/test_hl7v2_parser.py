"""HL7 v2 parser: delimiters from MSH-1/MSH-2, escapes, repetitions, components, framing."""

from __future__ import annotations

import pytest

from adapters.hl7v2.datatypes import DataTypeError, ts_to_fhir
from adapters.hl7v2.parser import Hl7ParseError, RawMessage, parse_message, split_messages


def test_custom_delimiters_from_msh() -> None:
    msg = parse_message("MSH#:-!@#APP#FAC#R#RF#20260101##ADT:A01#C1#P#2.4\rPID#1##123:::NHS:NH-456:::REM:MR")
    pid = msg.first("PID")
    assert msg.message_type == "ADT^A01"
    assert msg.control_id == "C1"
    assert [f.get(1) for f in pid.repetitions(3)] == ["123", "456"]
    assert pid.get(3, 4, rep=1) == "REM"


def test_msh_field_numbering() -> None:
    msg = parse_message("MSH|^~\\&|PAS|REM|X|Y|20261110||ADT^A01^ADT_A01|ID9|P|2.4")
    assert msg.msh.get(1) == "|"
    assert msg.msh.raw(2) == "^~\\&"
    assert msg.msh.get(9, 3) == "ADT_A01"
    assert msg.version == "2.4"


def test_escapes_resolved_after_splitting() -> None:
    msg = parse_message("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\r"
                        "NTE|1||A\\T\\E \\F\\ \\S\\ \\R\\ \\E\\ line\\.br\\two \\X41\\ \\Zlocal\\")
    assert msg.first("NTE").get(3) == "A&E | ^ ~ \\ line\ntwo A \\Zlocal\\"


def test_subcomponents_and_missing_elements() -> None:
    msg = parse_message("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1||X||EVERYMAN&&&&Aniston^ADAM")
    pid = msg.first("PID")
    assert pid.get(5, 1, 1) == "EVERYMAN"
    assert pid.get(5, 1, 5) == "Aniston"
    assert pid.get(99) == "" and pid.get(5, 9) == "" and pid.repetitions(40) == []


@pytest.mark.parametrize("text, reason", [
    ("PID|1", "must begin with an MSH"),
    ("MSH|^~", "truncated"),
    ("MSH|^^\\&|A", "four distinct"),
    ("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rP!D|x", "malformed segment"),
    ("MSH|^~\\&|A|B|C|D|1|||1|P|2.4", "MSH-9"),
])
def test_parse_errors_name_the_problem(text: str, reason: str) -> None:
    with pytest.raises(Hl7ParseError) as err:
        parse_message(text)
    assert reason in err.value.reason


def test_parse_error_carries_line() -> None:
    with pytest.raises(Hl7ParseError) as err:
        parse_message("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rEVN|A01\rbad segment", first_line=10)
    assert err.value.line == 12


def test_split_messages_handles_bom_line_endings_and_stray_text() -> None:
    text = "\ufeffjunk\r\nMSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\r\nPID|1\r\n\r\nMSH|^~\\&|A|B|C|D|1||ADT^A08|2|P|2.4\rPID|2\n"
    items = list(split_messages(text))
    assert isinstance(items[0], Hl7ParseError) and items[0].line == 1
    raws = [i for i in items if isinstance(i, RawMessage)]
    assert [r.line for r in raws] == [2, 5]
    assert parse_message(raws[1].text).first("PID").get(1) == "2"


def test_timestamps() -> None:
    assert ts_to_fhir("20261110091500") == "2026-11-10T09:15:00+00:00"
    assert ts_to_fhir("20260710091500") == "2026-07-10T09:15:00+01:00"  # BST
    assert ts_to_fhir("198908181126+0215") == "1989-08-18T11:26:00+02:15"
    assert ts_to_fhir("20210817151943.4+0200") == "2021-08-17T15:19:43.4+02:00"
    assert ts_to_fhir("19360211") == "1936-02-11"
    assert ts_to_fhir("202611") == "2026-11"
    with pytest.raises(DataTypeError):
        ts_to_fhir("20261340")
