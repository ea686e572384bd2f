"""The docs' examples, run: doctests, the README quickstart, the CLI's documented messages.

Each test reads the example out of the Markdown page, so editing a page without the code (or the
code without the page) fails here.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
from pathlib import Path

import colbridge
import pytest
from colbridge.cli import app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
runner = CliRunner()


def _blocks(page: Path, language: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown page."""
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", page.read_text("utf-8"), re.M | re.S)


def _documented_errors() -> list[str]:
    return [line.strip() for block in _blocks(DOCS / "cli.md", "text")
            for line in block.splitlines() if line.strip().startswith("error: ")]


@pytest.mark.parametrize("page", [p for p in PAGES if ">>> " in p.read_text("utf-8")],
                         ids=lambda p: p.name)
def test_doctests_in_the_docs(page):
    parser, runner_ = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for number, block in enumerate(_blocks(page, "python")):
        test = parser.get_doctest(block, {}, f"{page.name}[{number}]", str(page), 0)
        examples += len(test.examples)
        runner_.run(test)
    assert examples and runner_.summarize(verbose=False).failed == 0


def test_the_api_page_names_every_export():
    text = (DOCS / "api.md").read_text("utf-8")
    stated = int(re.search(r"`colbridge.__all__` lists these (\d+) names", text).group(1))
    assert stated == len(colbridge.__all__)
    errors = [n for n in colbridge.__all__ if n.endswith("Error")]
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    assert f"`ColbridgeError`](#errors) and {words[len(errors) - 1]} subclasses" in text
    listed = set(re.findall(r"\[`(\w+)`\]", text.split("\n## ")[0]))
    assert listed == {n for n in colbridge.__all__ if n not in errors} | {"ColbridgeError"}


def test_the_readme_quickstart_runs_and_prints_what_it_says(tmp_path, monkeypatch, offline_model):
    (code,) = _blocks(ROOT / "README.md", "python")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    first, second = printed.getvalue().splitlines()
    hit_id, score, normalized = first.split()
    assert hit_id == "bread" and 0 <= float(normalized) <= 1 and float(score) > float(normalized)
    assert second == re.search(r"print\(\[r\.index for r in ranked\]\)\s+# (.*)", code).group(1)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_quickstart_prints_its_documented_output(tmp_path, monkeypatch, offline_model,
                                                     backend):
    """The documented figures are the float32 vectors' (``onnx``, as ``torch``); ``openvino``,
    the default on a bfloat16 CPU, prints the same hits in the same order with scores a little
    off, as the page says."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    section = (DOCS / "quickstart.md").read_text("utf-8").split("## A first index")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    documented = re.search(r"Output:\n\n```text\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLBRIDGE_BACKEND", backend)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "quickstart.md", "exec"), {})
    if backend == "onnx":
        assert printed.getvalue() == documented
    else:
        def scoreless(text: str) -> str:
            return re.sub(r"\d+\.\d+", "<score>", text)

        assert scoreless(printed.getvalue()) == scoreless(documented)


def test_every_command_has_a_section_in_the_cli_page():
    text = (DOCS / "cli.md").read_text("utf-8")
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert [c for c in commands if f"## `colbridge {c}`" not in text] == []


def test_the_documented_missing_index_and_filter_errors_are_what_the_cli_prints(tmp_path):
    missing = str(tmp_path / "nope")
    printed = {
        runner.invoke(app, ["search", "q", "--index", missing]).output.strip(),
        runner.invoke(app, ["info", "--index", missing]).output.strip(),
        runner.invoke(app, ["search", "q", "-i", missing, "-f", "{oops"]).output.strip(),
    }
    documented = {line.replace("/tmp/nope", missing) for line in _documented_errors()}
    assert len(printed) == 2 and printed <= documented


def test_the_documented_filter_operator_error(tmp_path, tiny_model):
    (line,) = [e for e in _documented_errors() if "unknown filter operator" in e]
    with colbridge.EmbeddedIndex(tmp_path / "ix", model=tiny_model) as index:
        index.add(["a text"], ids=["a"], metadatas=[{"year": 2000}])
    bad = runner.invoke(app, ["search", "q", "-i", str(tmp_path / "ix"),
                              "-f", '{"year": {"$after": 1990}}', "--mode", "bm25"])
    assert bad.output.strip() == line


def test_the_documented_offline_error_is_what_index_prints(tmp_path, monkeypatch):
    from colbridge.config import DEFAULT_MODEL
    from colbridge.models import colbert

    if colbert._cached_on_disk(DEFAULT_MODEL):
        pytest.skip("the default model is in the local cache here")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the page shows a machine without the hub, not the flag
    monkeypatch.setattr(colbert, "_hub_reachable", lambda: False)
    (notes := tmp_path / "notes").mkdir()
    (notes / "a.md").write_text("Magma rises through the crust.")
    result = runner.invoke(app, ["index", str(notes), "--index", str(tmp_path / "ix")])
    (line,) = [e for e in _documented_errors() if "cannot reach the Hugging Face hub" in e]
    assert result.output.strip() == line


def test_the_documented_search_title_has_the_cli_s_shape(tmp_path, tiny_model_path):
    def shape(title: str) -> str:
        return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"'[^']*'", "'Q'", title.strip()))

    with colbridge.EmbeddedIndex(tmp_path / "ix", model=str(tiny_model_path)) as index:
        index.add(["Green tea is steamed.", "Black tea is oxidised."], ids=["g", "b"])
    printed = runner.invoke(app, ["search", "tea", "-i", str(tmp_path / "ix")]).output
    (block,) = [b for b in _blocks(DOCS / "cli.md", "text") if "hits for 'how does sourdough" in b]
    title = " ".join(printed.split("┏")[0].split())  # the title may wrap at the runner's width
    assert shape(title) == shape(block.splitlines()[1])
