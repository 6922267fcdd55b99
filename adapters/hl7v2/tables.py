"""The MLLP listener's durable inbox: every received message, stored before its ACK.

HL7 v2.5.1 section 2.9 (original-mode acknowledgment) and the MLLP transport (HL7
v2.5.1 Appendix C, "Minimal Lower Layer Protocol"): a message is acknowledged only once
it is stored here, so an acknowledged message is never lost; ``dedupe_key`` (sending
application, sending facility, MSH-10) makes a repeat return the stored ACK instead of
being applied twice. ``seq`` is the order of arrival the worker applies in.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from exchange.db.metadata import metadata

BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

hl7v2_inbox = Table(
    "hl7v2_inbox",
    metadata,
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(400), nullable=False),
    Column("control_id", String(200), nullable=False),
    Column("message_type", String(20), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("peer", String(100), nullable=True),
    # pending -> applied | failed | superseded; error / rejected are never applied
    Column("status", String(16), nullable=False),
    Column("ack_code", String(2), nullable=False),
    Column("ack", Text, nullable=False),
    Column("detail", Text, nullable=True),
    Column("subject_key", String(200), nullable=True),
    Column("event_time", String(40), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("applied_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("dedupe_key"),
    Index("ix_hl7v2_inbox_status_seq", "status", "seq"),
)
