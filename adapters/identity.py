"""Identity: NHS numbers, deterministic ids and the person matcher (docs/adapters.md, "Identity").

* NHS number: 10 digits, the 10th a Modulus 11 check digit (NHS Data Dictionary, "NHS
  Number"); FHIR identifier system ``https://fhir.nhs.uk/Id/nhs-number`` (UK Core
  Patient). Spaces and dashes are removed before checking.
* Deterministic ids: a resource from a source system gets the id
  ``<slug>-<hash>`` derived from (source system, local key, resource type), so a re-run
  creates no new resource and a changed record updates the same one (FHIR R4
  resource.html#id: ``[A-Za-z0-9\\-\\.]{1,64}``).
* One shared Patient per person: its id is derived from the verified NHS number
  (``p-`` + hash; the number itself never appears in URLs or logs).
* The matching rule (the same one ``Patient/$match`` uses) is :func:`grade`:

  - ``certain``: the same verified NHS number; or, without one, family name, first
    given name, birth date, gender and postcode all equal (after normalisation) to
    exactly ONE person already known with a verified NHS number;
  - ``probable``: family name, first given name and birth date equal;
  - ``possible``: birth date and either family name or first given name equal;
  - ``certainly-not``: different verified NHS numbers.

  Only ``certain`` attaches a record to a shared Patient. Anything else goes to the
  unmatched queue (``adapters.unmatched``) with a provisional Patient of its own.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
NHS_VERIFICATION_URL = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
#: demographic authority when sources disagree (higher wins)
SOURCE_RANK = {"gp": 40, "hospital": 30, "community": 20, "social-care": 10}

_ID_SAFE = re.compile(r"[^A-Za-z0-9]+")


def source_rank(kind: str) -> int:
    return SOURCE_RANK.get(kind, 0)


def normalise_nhs_number(raw: str | None) -> str | None:
    """Digits of an NHS number written with spaces or dashes, or None if not 10 digits."""
    if raw is None:
        return None
    digits = re.sub(r"[\s\-]", "", str(raw))
    return digits if len(digits) == 10 and digits.isdigit() else None


def nhs_check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit of nine digits (None when the remainder makes it 10)."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_number_valid(raw: str | None) -> bool:
    digits = normalise_nhs_number(raw)
    if digits is None:
        return False
    return nhs_check_digit(digits[:9]) == int(digits[9])


def verified_nhs_number(patient: dict[str, Any]) -> str | None:
    """The Patient's NHS number if present, Modulus 11 valid and not marked unverified.

    A UK Core (or CareConnect STU3) NHSNumberVerificationStatus extension other than
    ``01`` (number present and verified) makes the number unverified for matching.
    """
    for ident in patient.get("identifier") or []:
        if not isinstance(ident, dict) or ident.get("system") != NHS_SYSTEM:
            continue
        digits = normalise_nhs_number(ident.get("value"))
        if digits is None or not nhs_number_valid(digits):
            continue
        status = _verification_code(ident)
        if status not in (None, "01"):
            continue
        return digits
    return None


def _verification_code(ident: dict[str, Any]) -> str | None:
    for ext in ident.get("extension") or []:
        if "NHSNumberVerificationStatus" in str(ext.get("url")):  # UK Core or CareConnect
            for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or []:
                if coding.get("code"):
                    return str(coding["code"])
    return None


def _slug(text: str, limit: int) -> str:
    return _ID_SAFE.sub("-", text).strip("-")[:limit].strip("-").lower() or "x"


def stored_id(source_system: str, local_key: str, resource_type: str) -> str:
    """The deterministic stored id of (source system, local key, resource type)."""
    digest = hashlib.sha256(f"{source_system}\x1f{resource_type}\x1f{local_key}".encode()).hexdigest()
    return f"{_slug(source_system, 16)}-{digest[:24]}"


def shared_patient_id(nhs_number: str) -> str:
    """The id of the one shared Patient of the person with this (verified) NHS number."""
    return "p-" + hashlib.sha256(f"nhs-number\x1f{nhs_number}".encode()).hexdigest()[:24]


def _norm_text(value: str | None) -> str:
    if not value:
        return ""
    text = unicodedata.normalize("NFC", value).casefold()
    text = re.sub(r"['\u2019\-]", "", text)
    return re.sub(r"\s+", " ", text).strip()


def demographics(patient: dict[str, Any]) -> dict[str, str]:
    """Normalised family, first given name, birth date, gender and postcode."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    official = [n for n in names if n.get("use") == "official"] or names
    family = given = ""
    if official:
        family = _norm_text(official[0].get("family"))
        givens = official[0].get("given") or []
        given = _norm_text(givens[0].split()[0]) if givens and givens[0] else ""
    postcode = ""
    for addr in patient.get("address") or []:
        if isinstance(addr, dict) and addr.get("postalCode") and addr.get("use") != "old":
            postcode = re.sub(r"\s+", "", str(addr["postalCode"])).upper()
            break
    return {
        "family": family,
        "given": given,
        "birth_date": str(patient.get("birthDate") or ""),
        "gender": str(patient.get("gender") or ""),
        "postcode": postcode,
    }


def demographic_key(patient: dict[str, Any]) -> str | None:
    """The exact-match key, or None unless all five elements are present."""
    d = demographics(patient)
    if not all(d.values()):
        return None
    return "|".join((d["family"], d["given"], d["birth_date"], d["gender"], d["postcode"]))[:255]


def grade(query: dict[str, Any], candidate: dict[str, Any]) -> tuple[str, float] | None:
    """Match grade and score of ``candidate`` for ``query`` (both Patient dicts).

    Returns None when nothing at all matches (not worth reporting).
    """
    qn, cn = verified_nhs_number(query), verified_nhs_number(candidate)
    if qn and cn:
        return ("certain", 1.0) if qn == cn else ("certainly-not", 0.0)
    qd, cd = demographics(query), demographics(candidate)
    key_q, key_c = demographic_key(query), demographic_key(candidate)
    if key_q and key_q == key_c:
        return "certain", 0.95
    same = {k for k in qd if qd[k] and qd[k] == cd[k]}
    if {"family", "given", "birth_date"} <= same:
        return "probable", 0.8
    if "birth_date" in same and ("family" in same or "given" in same):
        return "possible", 0.5
    return None
