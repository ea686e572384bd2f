"""``colbridge search --explain`` names each hit's best passage by its character span."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from colbridge import EmbeddedIndex, Hit
from colbridge.cli import _passage_label, app
from rich.console import Console
from typer.testing import CliRunner

runner = CliRunner()
TEXT = "Bread rises overnight. Green tea is steamed soon after picking. Violins have strings."


@pytest.fixture
def index_path(tmp_path, tiny_model_path):
    path = tmp_path / "ix"
    with EmbeddedIndex(path, model=str(tiny_model_path)) as index:
        index.add([TEXT, "Magma rises through the crust."], ids=["long", "short"])
    return path


@pytest.fixture
def with_passages(monkeypatch):
    """Hits of ``long`` get its second sentence as their best passage (the passages work gives
    real ones; this one is fixed, to check what the command prints)."""
    search = EmbeddedIndex.search

    def searching(self, *args, **kwargs):
        return [replace(h, passage=(23, 63)) if h.id == "long" else h
                for h in search(self, *args, **kwargs)]

    monkeypatch.setattr(EmbeddedIndex, "search", searching)


def test_json_gives_the_passage_span(index_path, with_passages):
    args = ["search", "green tea", "--index", str(index_path), "--json"]
    explained = {h["id"]: h for h in json.loads(runner.invoke(app, [*args, "--explain"]).output)}
    assert explained["long"]["passage"] == [23, 63]
    assert TEXT[23:63] == "Green tea is steamed soon after picking."
    assert explained["short"]["passage"] is None
    assert all("passage" not in h for h in json.loads(runner.invoke(app, args).output))


def test_piped_output_names_the_passage(index_path, with_passages):
    result = runner.invoke(app, ["search", "green tea", "--index", str(index_path), "--explain"])
    assert result.exit_code == 0, result.output
    flat = " ".join(re.sub(r"[│┃]", " ", result.output).split())
    assert "passage 23-63:" in flat and flat.count("passage ") == 1  # only the split document
    assert "[dim]" not in result.output
    plain = runner.invoke(app, ["search", "green tea", "--index", str(index_path)])
    assert "passage 23-63" not in plain.output


def test_a_terminal_gets_the_span_in_markup():
    hit = Hit(id="d", score=1.0, normalized_score=0.5, text=TEXT, passage=(23, 63))
    console = Console(force_terminal=True, width=200, color_system="standard")
    with console.capture() as captured:
        console.print(_passage_label(hit.passage, terminal=True) + "text", highlight=False)
    assert captured.get().startswith("\x1b[2mpassage 23-63\x1b[0m text")  # dim
    assert _passage_label(None, terminal=True) == _passage_label(None, terminal=False) == ""
    assert _passage_label((5, 9), terminal=False) == "passage 5-9: "
