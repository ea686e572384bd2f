"""The command line: index files and folders, search, info, and one-line errors."""

from __future__ import annotations

import json
import re

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
    assert table.exit_code == 0 and f"({mode}: search " in table.output


def test_search_refuses_an_unknown_mode(cli_index):
    result = runner.invoke(app, ["search", "tea", "--index", str(cli_index), "--mode", "sparse"])
    assert result.exit_code == 2 and "sparse" in result.output


def test_search_says_when_a_filter_field_is_in_no_document(cli_index):
    result = runner.invoke(app, ["search", "strings", "--index", str(cli_index),
                                 "--filter", '{"knd": "music"}'])
    assert result.exit_code == 0, result.output
    assert "0 hits" in result.output
    assert "no document has the metadata field 'knd'" in result.output
    assert "Traceback" not in result.output and "UserWarning" not in result.output
    found = runner.invoke(app, ["search", "strings", "--index", str(cli_index),
                                "--filter", '{"kind": "nothing"}'])
    assert found.exit_code == 0 and "metadata field" not in found.output


def test_search_table(cli_index):
    result = runner.invoke(app, ["search", "tea", "--index", str(cli_index), "-k", "2"])
    assert result.exit_code == 0 and "2 hits" in result.output


def test_search_title_reports_model_load_and_search_time_apart(cli_index):
    title = runner.invoke(app, ["search", "tea", "--index", str(cli_index)]).output.splitlines()[0]
    search_ms = re.search(r"search (\d+) ms", title)
    load_s = re.search(r"model loaded in (\d+\.\d) s", title)
    assert search_ms and load_s, title
    lexical = runner.invoke(app, ["search", "tea", "--index", str(cli_index), "--mode", "bm25"])
    assert "model loaded" not in lexical.output  # bm25 never loads the model


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
        (["search", "q", "--index", "MISSING"], "no colbridge index at MISSING"),
        (["info", "--index", "MISSING"], "no colbridge index at MISSING"),
        (["check", "--index", "MISSING"], "no colbridge index at MISSING"),
        (["search", "q", "--index", "EMPTY"], "no colbridge index at EMPTY"),
        (["search", "q", "--index", "INDEX", "--filter", "{oops"], "not valid JSON"),
        (["search", "q", "--index", "INDEX", "--filter", '{"a": {"$bad": 1}}'], "unknown filter operator"),
        (["search", "q", "--index", "INDEX", "-k", "0"], "k must be at least 1"),
        (["search", "", "--index", "INDEX"], "query is empty"),
        (["index", "MISSING", "--index", "INDEX"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_without_traceback(cli_index, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    places = {"INDEX": str(cli_index), "MISSING": str(tmp_path / "nope"),
              "EMPTY": str(tmp_path / "empty")}
    args = [places.get(a, a) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    for name, value in places.items():
        message = message.replace(name, value)
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "nope").exists()  # a read never creates the folder


def test_the_three_readers_word_a_missing_index_alike(tmp_path):
    missing = str(tmp_path / "nope")
    lines = {runner.invoke(app, [*command, "--index", missing]).output.strip()
             for command in (["search", "q"], ["info"], ["check"])}
    assert len(lines) == 1 and f"colbridge index FILES --index {missing}" in lines.pop()


@pytest.fixture
def default_model_unavailable():
    from colbridge.config import DEFAULT_MODEL
    from colbridge.models.colbert import _cached_on_disk

    if _cached_on_disk(DEFAULT_MODEL):
        pytest.skip("the default model is in the local cache here")


def test_index_offline_prints_the_exact_fix(files, tmp_path, default_model_unavailable):
    target = tmp_path / "new-index"
    result = runner.invoke(app, ["index", str(files / "notes"), "--index", str(target)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "--model offline-minilm" in line and "COLBRIDGE_MODEL=offline-minilm" in line
    assert "ColBERTModel(" not in line  # the Python advice is not the command line's
    assert "Traceback" not in result.output


def test_an_explicit_model_typo_fails_with_a_suggestion(tmp_path):
    result = runner.invoke(app, ["demo", "--model", "offline-minlm"])
    assert result.exit_code == 1 and "did you mean 'offline-minilm'" in result.output


def test_demo_falls_back_to_the_offline_model_in_one_line(offline_model, default_model_unavailable,
                                                         monkeypatch):
    from colbridge import cli

    spinner: list[str] = []
    original = cli.err.status
    monkeypatch.setattr(cli.err, "status",
                        lambda text, **kw: spinner.append(text) or original(text))
    result = runner.invoke(app, ["demo", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "running on the offline stand-in offline-minilm" in result.output
    assert "No sentence-transformers model found" not in result.output
    assert spinner[-1] == "Loading offline-minilm …"  # the spinner names the model it loads
    assert "Indexed 122 passages" in result.output
    assert "(backend " in " ".join(result.output.split())  # which encoder ran
    assert "Top hit is the expected passage for" in result.output
    correct = int(result.output.split("expected passage for")[1].split("/")[0].strip(" *[]bold"))
    assert correct >= 7


@pytest.mark.parametrize("depth", [17, 1_000, 100_000])
def test_a_deeply_nested_filter_is_one_line_error(cli_index, depth):
    deep = '{"$and": [' * depth + '{"kind": "food"}' + "]}" * depth
    result = runner.invoke(app, ["search", "q", "--index", str(cli_index), "--filter", deep])
    assert result.exit_code == 1, result.output
    assert "nested" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("value", ["0", "-1"])
def test_pool_factor_below_one_is_refused_before_anything_is_written(files, tmp_path, value,
                                                                    tiny_model_path):
    target = tmp_path / "index"
    result = runner.invoke(app, ["index", str(files / "extra.jsonl"), "--index", str(target),
                                 "--model", str(tiny_model_path), "--pool-factor", value])
    assert result.exit_code == 1, result.output
    assert f"--pool-factor must be at least 1, got {value}" in result.output
    assert not target.exists()


def test_pool_factor_reaches_the_encoder(files, tmp_path, tiny_model_path):
    counts = {}
    for factor in (1, 2):
        target = tmp_path / f"pooled-{factor}"
        result = runner.invoke(app, ["index", str(files / "notes"), "--index", str(target),
                                     "--model", str(tiny_model_path), "--pool-factor", str(factor),
                                     ])
        assert result.exit_code == 0, result.output
        from colbridge import EmbeddedIndex

        with EmbeddedIndex(target, create=False) as index:
            counts[factor] = index.stats()["token_vectors"]
    assert counts[2] < counts[1]


def test_search_explain_marks_the_matched_words(cli_index):
    result = runner.invoke(app, ["search", "green tea", "--index", str(cli_index), "-k", "1",
                                 "--explain"])
    assert result.exit_code == 0, result.output
    marked = re.findall(r"\*\*([^*]+)\*\*", result.output)  # not a terminal: plain markers
    assert marked and all(m.strip() for m in marked)
    plain = runner.invoke(app, ["search", "green tea", "--index", str(cli_index), "-k", "1"])
    assert "**" not in plain.output


def test_search_explain_json_gives_highlight_offsets(cli_index):
    args = ["search", "green tea", "--index", str(cli_index), "-k", "2", "--json"]
    explained = json.loads(runner.invoke(app, [*args, "--explain"]).output)
    assert all(h["highlights"] for h in explained)
    for hit in explained:
        for start, end in hit["highlights"]:
            assert 0 <= start < end <= len(hit["text"])
    assert all("highlights" not in h for h in json.loads(runner.invoke(app, args).output))


def _long_jsonl(path, doc_id="long"):
    words = " ".join(f"word{i % 50} topic{i % 7}." for i in range(200))
    path.write_text(json.dumps({"id": doc_id, "text": words}) + "\n")
    return path


def test_index_splits_long_documents_by_default(tmp_path, tiny_model_path):
    from colbridge import EmbeddedIndex

    source = _long_jsonl(tmp_path / "long.jsonl")
    result = runner.invoke(app, ["index", str(source), "--index", str(tmp_path / "index"),
                                 "--model", str(tiny_model_path)])
    assert result.exit_code == 0, result.output
    with EmbeddedIndex(tmp_path / "index", create=False) as index:
        assert index.count() == 1 and index.stats()["split_documents"] == 1
    again = runner.invoke(app, ["index", str(source), "--index", str(tmp_path / "index"),
                                "--long-documents", "truncate"])
    assert again.exit_code == 1 and "long_documents='split'" in again.output


def test_index_long_documents_error_names_the_document_and_writes_nothing(tmp_path,
                                                                          tiny_model_path):
    target = tmp_path / "index"
    result = runner.invoke(app, ["index", str(_long_jsonl(tmp_path / "long.jsonl", "big-one")),
                                 "--index", str(target), "--model", str(tiny_model_path),
                                 "--long-documents", "error"])
    assert result.exit_code == 1, result.output
    assert re.search(r"'big-one' has \d+ tokens", result.output)
    assert "Traceback" not in result.output and not target.exists()
