"""The command line: index files and folders, search, info, and one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from colbridge.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    (root / "notes").mkdir()
    (root / "notes" / "volcano.md").write_text("# Volcanoes\nMagma rises through the crust and erupts.")
    (root / "notes" / "tea.txt").write_text("Green tea is steamed or pan-fired soon after picking.")
    (root / "notes" / "ignored.bin").write_bytes(b"\x00\x01")
    (root / "extra.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"id": "j1", "text": "The violin has four strings tuned in fifths.", "metadata": {"kind": "music"}},
        {"id": "j2", "text": "Sourdough rises thanks to wild yeast and bacteria.", "metadata": {"kind": "food"}},
    ]) + "\n")
    return root


@pytest.fixture(scope="module")
def cli_index(files, tmp_path_factory, tiny_model_path):
    path = tmp_path_factory.mktemp("cli") / "index"
    result = runner.invoke(app, ["index", str(files / "notes"), str(files / "extra.jsonl"),
                                 "--index", str(path), "--model", str(tiny_model_path)])
    assert result.exit_code == 0, result.output
    assert "Indexed 4 documents" in result.output
    return path


def test_index_then_search_json(cli_index):
    result = runner.invoke(app, ["search", "violin strings", "--index", str(cli_index), "-k", "4",
                                 "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert {h["id"] for h in hits} == {"volcano.md", "tea.txt", "j1", "j2"}
    assert all(0 <= h["normalized_score"] <= 1 for h in hits)


def test_search_with_filter(cli_index):
    result = runner.invoke(app, ["search", "anything", "--index", str(cli_index), "--json",
                                 "--filter", '{"kind": "food"}'])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.output)] == ["j2"]


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_search_modes(cli_index, mode):
    result = runner.invoke(app, ["search", "wild yeast sourdough", "--index", str(cli_index),
                                 "--mode", mode, "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert hits[0]["id"] == "j2"  # the only text with these words
    table = runner.invoke(app, ["search", "sourdough", "--index", str(cli_index), "--mode", mode])
    assert table.exit_code == 0 and f"({mode}," in table.output


def test_search_refuses_an_unknown_mode(cli_index):
    result = runner.invoke(app, ["search", "tea", "--index", str(cli_index), "--mode", "sparse"])
    assert result.exit_code == 2 and "sparse" in result.output


def test_search_table(cli_index):
    result = runner.invoke(app, ["search", "tea", "--index", str(cli_index), "-k", "2"])
    assert result.exit_code == 0 and "2 hits" in result.output


def test_info(cli_index):
    result = runner.invoke(app, ["info", "--index", str(cli_index), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["documents"] == 4 and stats["dimension"] == 16


def test_reindexing_replaces_by_id(cli_index, files, tiny_model_path):
    result = runner.invoke(app, ["index", str(files / "extra.jsonl"), "--index", str(cli_index),
                                 "--model", str(tiny_model_path)])
    assert result.exit_code == 0 and "(2 replaced)" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "q", "--index", "MISSING"], "no colbridge index"),
        (["search", "q", "--index", "INDEX", "--filter", "{oops"], "not valid JSON"),
        (["search", "q", "--index", "INDEX", "--filter", '{"a": {"$bad": 1}}'], "unknown filter operator"),
        (["search", "q", "--index", "INDEX", "-k", "0"], "k must be at least 1"),
        (["search", "", "--index", "INDEX"], "query is empty"),
        (["info", "--index", "MISSING"], "no manifest.json"),
        (["index", "MISSING", "--index", "INDEX"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_without_traceback(cli_index, tmp_path, args, message):
    places = {"INDEX": str(cli_index), "MISSING": str(tmp_path / "nope")}
    args = [places.get(a, a) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_demo_runs_on_the_offline_model(offline_model):
    result = runner.invoke(app, ["demo", "--model", "offline-minilm", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "Indexed 122 passages" in result.output
    assert "(backend " in " ".join(result.output.split())  # which encoder ran
    assert "Top hit is the expected passage for" in result.output
    correct = int(result.output.split("expected passage for")[1].split("/")[0].strip(" *[]bold"))
    assert correct >= 7
