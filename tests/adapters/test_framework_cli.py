"""The registry, the scaffold and the command line (adapters.registry, adapters.scaffold, adapters.cli)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters import registry
from adapters.cli import main
from adapters.scaffold import create, names
from exchange.db.tables import resource_current

ROOT = Path(__file__).resolve().parents[2]


def test_registry_lists_builtins_and_reports_load_errors(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN, "broken", "no_such_module_xyz:Nope")
    infos = {i.name: i for i in registry.available()}
    assert {"gp-connect", "social-care", "community", "hl7v2"} <= set(infos)
    assert infos["broken"].error and "no_such_module_xyz" in infos["broken"].error
    with pytest.raises(registry.UnknownAdapter):
        registry.load("nope-not-here")


def test_scaffold_names_and_refusals(tmp_path):
    assert names("care-home")["classname"] == "CareHomeAdapter"
    with pytest.raises(ValueError):
        names("Bad_Name")
    create("care-home", tmp_path)
    with pytest.raises(FileExistsError):
        create("care-home", tmp_path)


def test_scaffold_tests_pass(tmp_path):
    root = create("care-home", tmp_path)
    pyproject = (root / "pyproject.toml").read_text()
    assert 'care-home = "exchange_adapter_care_home.adapter:CareHomeAdapter"' in pyproject
    env = {"PYTHONPATH": f"{ROOT}:{root}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout


def test_scaffolded_adapter_through_the_cli(tmp_path, engine, settings, monkeypatch, capsys):
    root = create("care-home", tmp_path)
    # plug it in as an installed entry point would, then drive the CLI against the test database
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setitem(registry.BUILTIN, "care-home", "exchange_adapter_care_home.adapter:CareHomeAdapter")
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", settings.database_url)
    assert main(["adapters", "list"]) == 0
    assert "care-home" in capsys.readouterr().out
    report = tmp_path / "report.json"
    sample = root / "sample" / "people.csv"
    with engine.connect() as c:
        before = c.execute(select(func.count()).select_from(resource_current)).scalar_one()
    assert main(["ingest", "care-home", str(sample), "--dry-run", "--report", str(report), "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert data["dryRun"] is True and data["counts"]["read"] == 3 and data["counts"]["unmatched"] == 1
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(resource_current)).scalar_one() == before
    bad = tmp_path / "bad.csv"
    bad.write_text(sample.read_text().replace("30/07/1948", "1948-07-30"))
    assert main(["ingest", "care-home", str(bad), "--report", str(report), "--quiet",
                 "--source-system", "CH-TEST"]) == 2
    data = json.loads(report.read_text())
    assert data["status"] == "complete" and data["counts"]["rejected"] == 1
    (problem,) = [p for p in data["problems"] if p["severity"] == "error"]
    assert problem["location"] == {"file": str(bad), "line": 3} and problem["element"] == "BIRTH_DATE"
    out = capsys.readouterr().out
    assert "rejected 1" in out and "line 3" in out
    assert main(["adapters", "unmatched", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert any(e["sourceSystem"] == "CH-TEST" and e["localKey"] == "CH003" for e in entries)


def test_ingest_unknown_adapter_and_missing_path(capsys):
    assert main(["ingest", "nope-not-here", "x.csv", "--quiet"]) == 1
    assert main(["ingest", "social-care", "/no/such/dir", "--quiet"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_ingest_into_an_unmigrated_database_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    sample = tmp_path / "x.csv"
    sample.write_text("x")
    assert main(["ingest", "social-care", str(sample), "--quiet"]) == 1
    assert "exchange db upgrade" in capsys.readouterr().err
