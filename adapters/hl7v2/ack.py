"""HL7 v2 ACK messages (original mode): MSH + MSA (+ ERR).

HL7 v2.5.1 section 2.9.2 and 2.14.1 (MSA), 2.14.5 (ERR, table 0357 error codes):
AA accepted, AE application error, AR application reject; MSA-3 carries the reason
(text, kept for v2.3 receivers) and ERR-3 / ERR-8 the coded error and its diagnostics.
"""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.hl7v2.parser import Message

#: HL7 table 0357 message error condition codes we use
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT = "201"
APPLICATION_ERROR = "207"


def _clean(text: str, limit: int = 200) -> str:
    for ch in "|^~\\&\r\n":
        text = text.replace(ch, " ")
    return text[:limit].strip()


def build_ack(code: str, *, msg: Message | None = None, control_id: str = "",
              reason: str = "", error_code: str = APPLICATION_ERROR,
              receiver: str = "EXCHANGE") -> str:
    """An ACK for ``msg`` (or for an unparseable message: ``control_id`` as best known)."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    if msg is not None:
        d = msg.delimiters
        enc = f"{d.component}{d.repetition}{d.escape}{d.subcomponent}"
        fs = d.field
        version = msg.version or "2.4"
        control_id = msg.control_id
        to_app, to_fac = msg.msh.raw(3), msg.msh.raw(4)
        trigger = msg.trigger_event
        processing = msg.msh.raw(11) or "P"
    else:
        fs, enc, version, to_app, to_fac, trigger, processing = "|", "^~\\&", "2.4", "", "", "", "P"
    ack_id = f"ACK{_clean(control_id, 190)}" if control_id else f"ACK{now}"
    msh = fs.join(["MSH", enc, receiver, receiver, to_app, to_fac, now, "",
                   f"ACK^{trigger}^ACK" if trigger else "ACK", ack_id, processing, version])
    msa = fs.join(["MSA", code, _clean(control_id, 199), _clean(reason, 80)])
    segments = [msh, msa]
    if code != "AA":
        severity = "E"
        comp = enc[0]
        segments.append(fs.join(["ERR", "", "", f"{error_code}{comp}{_clean(reason, 60)}"
                                 f"{comp}HL70357", severity, "", "", "", _clean(reason, 250)]))
    return "\r".join(segments) + "\r"
