"""Prefix matching (search.html#string, uri ``:below``): the binary range
``[text, prefix_upper_bound(text))`` used on both databases."""

from __future__ import annotations

from exchange.db.engine import write_tx
from exchange.search.conditions import prefix_upper_bound


def test_prefix_upper_bound_is_the_least_string_above_the_prefix():
    assert prefix_upper_bound("smith") == "smiti"
    assert prefix_upper_bound("a\U0010ffff") == "b"  # trailing maximal characters drop
    assert prefix_upper_bound("\U0010ffff\U0010ffff") is None
    assert prefix_upper_bound("") is None
    assert prefix_upper_bound("x\ud7ff") == "x\ue000"  # surrogates are skipped
    for text in ("smith", "é", "a\U0010ffff", "z9"):
        upper = prefix_upper_bound(text)
        # every extension of text sorts below it, in code point order and UTF-8 byte order
        for ext in (text, text + "\U0010ffff", text + "\U0010ffff" * 3 + "zz", text + "\x00"):
            assert text <= ext < upper and ext.encode() < upper.encode()


def test_name_prefix_matches_names_continuing_with_the_highest_code_point(sx):
    # the range used to end at text + U+10FFFF, which cut off such names on SQLite
    with write_tx(sx.engine) as conn:
        sx.put(conn, {"resourceType": "Patient", "id": "pmax", "name": [{"family": "Qx\U0010ffffa"}]})
        sx.put(conn, {"resourceType": "Patient", "id": "pmax2", "name": [{"family": "Qy"}]})
    assert sx.find("Patient", "family=qx") == {"pmax"}
    assert sx.find("Patient", "family=q") == {"pmax", "pmax2"}
    assert sx.find("Patient", "family=qx%F4%8F%BF%BF") == {"pmax"}
