"""Discovery through the ``exchange.adapters`` entry point group, and ``exchange adapters
new`` from the command line (issue 8, "The interface"; docs/adapters.md "Discovery")."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from adapters import registry
from adapters.cli import main


def _entry_points(*eps: EntryPoint):  # noqa: ANN202
    def fake(*, group: str):  # noqa: ANN202
        return [ep for ep in eps if ep.group == group]
    return fake


def test_an_installed_entry_point_is_discovered_and_loadable(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="from-plugin", value="adapters.community:CommunityAdapter", group=registry.GROUP)
    other = EntryPoint(name="elsewhere", value="adapters.community:CommunityAdapter", group="not.ours")
    monkeypatch.setattr(registry, "entry_points", _entry_points(ep, other))
    infos = {i.name: i for i in registry.available()}
    assert infos["from-plugin"].origin == "entry point" and infos["from-plugin"].error is None
    assert "elsewhere" not in infos
    assert type(registry.load("from-plugin")).__name__ == "CommunityAdapter"


def test_an_entry_point_of_a_built_in_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="community", value="adapters.hl7v2:Hl7v2Adapter", group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", _entry_points(ep))
    infos = {i.name: i for i in registry.available()}
    assert infos["community"].origin == "entry point"
    assert type(registry.load("community")).__name__ == "Hl7v2Adapter"


def test_adapters_new_from_the_command_line(tmp_path, capsys) -> None:  # noqa: ANN001
    assert main(["adapters", "new", "care-home", "--dir", str(tmp_path)]) == 0
    root = next(tmp_path.iterdir())
    assert (root / "pyproject.toml").is_file()
    assert 'care-home = "exchange_adapter_care_home.adapter:CareHomeAdapter"' in (root / "pyproject.toml").read_text()
    assert any(p.name.startswith("test_") for p in (root / "tests").iterdir())
    assert str(root) in capsys.readouterr().out
    # a second time refuses rather than overwriting the integrator's work
    assert main(["adapters", "new", "care-home", "--dir", str(tmp_path)]) != 0
    assert main(["adapters", "new", "Bad_Name", "--dir", str(tmp_path)]) != 0
