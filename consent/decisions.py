"""Decisions of the consent gate, with the rule ids and notices they carry (issue 5).

Rule ids are recorded by the choke point for the audit log and explained by
``$access-check``; docs/consent-policy.md lists them all. Requester-level refusals
(who is asking, not what the resource holds) may be disclosed: a read answers 403;
every other denial answers 404 so the existence of withheld data is not revealed.
"""

from __future__ import annotations

from exchange.pipeline.disclosure import Decision

WITHHELD_NOTICE = "Some information in this record has been withheld at the patient's request."
CARE_PREF_NOTICE = ("End-of-life or resuscitation preferences have been withheld: the "
                    "patient's consent directive explicitly restricts them.")

#: denials that depend only on who asks, not on what the resource holds: a read answers
#: 403 with the reason; every other denial answers 404 so no existence is disclosed
DISCLOSED_REFUSALS = frozenset({"policy.no-role", "policy.purpose", "break-glass.no-reason",
                                "relationship.none", "policy.system-client",
                                "policy.audit-restricted", "policy.role-scope"})


def deny(rule: str, reason: str, notice: str | None = None) -> Decision:
    return Decision("deny", rule=rule, reason=reason, notice=notice,
                    disclose_refusal=rule in DISCLOSED_REFUSALS)


def permit(rule: str, reason: str = "") -> Decision:
    return Decision("permit", rule=rule, reason=reason)
