"""``exchange consent check-policy`` and ``reindex`` (the CLI module, called directly)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from consent.cli import register
from consent.policy import DEFAULT_POLICY_PATH


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_check_policy_valid_and_invalid(tmp_path: Path, capsys):
    args = _parse("consent", "check-policy", str(DEFAULT_POLICY_PATH))
    assert args.func(args) == 0
    assert "valid" in capsys.readouterr().out
    doc = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    doc["break_glass"]["overrides"] = ["everything"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    args = _parse("consent", "check-policy", str(bad))
    assert args.func(args) == 1
    assert "break_glass.overrides" in capsys.readouterr().err


def test_reindex_rebuilds_facts(put, cengine, db_url, capsys):
    from sqlalchemy import delete, func, select

    from consent.tables import consent_fact
    from exchange.db.engine import read_tx, write_tx

    put({"resourceType": "Patient", "id": "cli-p"})
    with write_tx(cengine) as conn:
        conn.execute(delete(consent_fact))
    args = _parse("consent", "reindex", "--database", db_url)
    assert args.func(args) == 0
    with read_tx(cengine) as conn:
        assert conn.execute(select(func.count()).select_from(consent_fact)
                            .where(consent_fact.c.res_id == "cli-p")).scalar() == 1
    assert "consent index rebuilt" in capsys.readouterr().out
