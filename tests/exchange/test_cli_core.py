"""The core CLI: ``exchange db upgrade`` and ``exchange load`` (through the API write path)."""

from __future__ import annotations

import orjson
from sqlalchemy import inspect

from exchange.cli import main
from exchange.db.engine import make_engine, read_tx
from exchange.repository.store import read_current


def test_db_upgrade_then_load_a_transaction_bundle(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("EXCHANGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("EXCHANGE_AUDIT_ENABLED", "0")
    assert main(["db", "upgrade", "--database", url]) == 0
    assert "resource_current" in inspect(make_engine(url)).get_table_names()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "cli-p"},
         "request": {"method": "PUT", "url": "Patient/cli-p"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:p"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    path = tmp_path / "bundle.json"
    path.write_bytes(orjson.dumps(bundle))
    assert main(["load", str(path), "--database", url]) == 0
    assert "2 entries processed" in capsys.readouterr().out
    with read_tx(make_engine(url)) as conn:
        assert read_current(conn, "Patient", "cli-p") is not None
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({**bundle, "entry": [{"resource": {"resourceType": "Observation"},
                                                       "request": {"method": "POST", "url": "Observation"}}]}))
    assert main(["load", str(bad), "--database", url]) == 1
    assert "rejected" in capsys.readouterr().err


def test_flags_win_over_environment(monkeypatch):
    from exchange.cli import build_parser, settings_from

    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "sqlite:///from-env.db")
    args = build_parser().parse_args(["db", "upgrade", "--database", "sqlite:///from-flag.db"])
    assert settings_from(args).database_url == "sqlite:///from-flag.db"
    args = build_parser().parse_args(["db", "upgrade"])
    assert settings_from(args).database_url == "sqlite:///from-env.db"
