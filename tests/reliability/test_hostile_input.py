"""Property-based tests: any text, id, metadata, filter or k either works as documented or gets a
typed error and changes nothing — through the core API, the CLI and both adapters.

tests/core/index/test_bad_input.py lists hand-picked bad inputs; here Hypothesis generates them
(lone surrogates, NUL and other control characters, bidi and zero-width characters, SQL-looking
strings, deep and non-JSON metadata, unknown operators) and each outcome is compared with an
independent statement of the rules.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colbridge import (
    ColBERTModel,
    ColbridgeError,
    EmbeddedIndex,
    IndexMismatchError,
    InvalidInputError,
)
from colbridge.filters import matches, parse_filter

from .conftest import HashEncoder

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
SQLISH = ["x'); DROP TABLE documents; --", "' OR 1=1 --", "\"; DELETE FROM state; --",
          "1; ATTACH DATABASE '/tmp/x' AS y", "%", "_", "*", "../../etc/passwd", "C:\\con"]

# Characters people do not expect: lone surrogates, controls (NUL included), format characters
# (bidi overrides, zero-width), combining marks, odd spaces, emoji, CJK.
odd_chars = st.characters(categories=["Cs", "Cc", "Cf", "Mn", "Zs", "Zl", "So", "Lo"])
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.one_of(st.characters(), odd_chars), max_size=40),
    st.sampled_from(SQLISH + ["", " ", "\t\n", "\x00", "\u200b", "\ud800", "a\udfff b"]),
)
ids = st.one_of(texts, st.text(min_size=500, max_size=600), st.integers(), st.none())


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_ok(t: object) -> bool:
    return isinstance(t, str) and bool(t.strip()) and _encodable(t)


def id_ok(i: object) -> bool:
    return isinstance(i, str) and 0 < len(i) <= 512 and _encodable(i) and "\0" not in i


json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                        st.floats(allow_nan=False, allow_infinity=False), texts)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(texts, inner, max_size=3), max_leaves=6)
metadatas = st.one_of(
    st.none(),
    st.dictionaries(texts, json_value, max_size=4),
    st.sampled_from([{"x": object()}, {"x": float("nan")}, {"x": b"bytes"}, {1: "int key"},
                     {"x": {1, 2}}, "not a dict", ["a", "list"], {"x": complex(1, 2)}]),
    st.integers(10, 40).map(lambda depth: _nested(depth)),
)


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"x": value}
    return value


def meta_ok(m: object) -> bool:
    if m is None:
        return True
    if not isinstance(m, dict):
        return False

    def ok(value: object, depth: int) -> bool:
        if depth > 16:
            return False
        if isinstance(value, str):
            return _encodable(value) and "\0" not in value
        if value is None or isinstance(value, (bool, int)):
            return True
        if isinstance(value, float):
            return np.isfinite(value)
        if isinstance(value, dict):
            return all(isinstance(k, str) and ok(k, depth) and ok(v, depth + 1)
                       for k, v in value.items())
        if isinstance(value, list):
            return all(ok(v, depth + 1) for v in value)
        return False

    return ok(m, 0)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """20 documents, encoded by the hash encoder (no model to load: examples are cheap)."""
    ix = EmbeddedIndex(tmp_path_factory.mktemp("hostile") / "index", model=HashEncoder())
    base = [f"base document {i} about rivers and {'mountains' if i % 2 else 'oceans'}"
            for i in range(20)]
    ix.add(base, ids=[f"base-{i}" for i in range(20)], metadatas=[
        {"group": f"g{i % 3}", "n": i, "even": i % 2 == 0, "tag": None if i % 5 else "five",
         "list": [i], "nested": {"n": i}, SQLISH[0]: i % 2} for i in range(20)])
    yield ix
    ix.close()


def _fingerprint(ix):
    return ix.count(), [(d.id, d.text) for d in ix.get([f"base-{i}" for i in range(20)])]


# -- core API ------------------------------------------------------------------------------------
@SETTINGS
@given(st.lists(st.tuples(texts, ids, metadatas), min_size=1, max_size=3))
def test_add_stores_exactly_or_rejects_and_changes_nothing(index, records):
    batch_texts, batch_ids, batch_metas = (list(x) for x in zip(*records))
    valid = (all(text_ok(t) for t in batch_texts) and all(id_ok(i) for i in batch_ids)
             and len(set(batch_ids)) == len(batch_ids) and all(meta_ok(m) for m in batch_metas)
             and not any(str(i).startswith("base-") for i in batch_ids))
    before = _fingerprint(index)
    if not valid:
        with pytest.raises(InvalidInputError):
            index.add(batch_texts, ids=batch_ids, metadatas=batch_metas)
        assert _fingerprint(index) == before
        return
    assert index.add(batch_texts, ids=batch_ids, metadatas=batch_metas) == batch_ids
    stored = index.get(batch_ids)
    assert [d.text for d in stored] == batch_texts
    assert [d.metadata for d in stored] == [json.loads(json.dumps(m or {})) for m in batch_metas]
    for text, doc_id in zip(batch_texts, batch_ids):  # searchable: its own text finds it
        hits = index.search(text, k=3)
        assert len(hits) == 3 and all(np.isfinite(h.score) for h in hits)
        assert doc_id in {h.id for h in hits}
    assert index.delete(batch_ids) == len(batch_ids)
    assert _fingerprint(index) == before


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(texts, min_size=1, max_size=3))
def test_the_real_tokenizer_takes_any_text_or_rejects_it(tiny_model, tmp_path_factory, batch):
    """Odd Unicode through PyLate's tokenizer and encoder: stored and searchable, or refused."""
    global _TINY
    if _TINY is None:
        _TINY = EmbeddedIndex(tmp_path_factory.mktemp("tiny") / "index", model=tiny_model)
        _TINY.add(["a river in the mountains", "the open ocean"], ids=["r", "o"])
    valid = all(text_ok(t) for t in batch)
    batch_ids = [f"t{n}" for n in range(len(batch))]
    if not valid:
        with pytest.raises(InvalidInputError):
            _TINY.add(batch, ids=batch_ids)
        assert _TINY.count() == 2
        return
    assert _TINY.add(batch, ids=batch_ids) == batch_ids
    assert [d.text for d in _TINY.get(batch_ids)] == batch
    for text in batch:
        assert len(_TINY.search(text, k=5)) == 2 + len(batch)
    _TINY.delete(batch_ids)


_TINY: EmbeddedIndex | None = None


@SETTINGS
@given(st.lists(ids, min_size=1, max_size=4))
def test_get_and_delete_with_any_ids(index, some_ids):
    before = _fingerprint(index)
    valid = all(id_ok(i) for i in some_ids) and len(set(some_ids)) == len(some_ids)
    if not valid:
        for call in (lambda: index.get(some_ids, missing_ok=True),
                     lambda: index.delete(some_ids, missing_ok=True)):
            with pytest.raises(InvalidInputError):
                call()
    else:
        found = index.get(some_ids, missing_ok=True)
        assert {d.id for d in found} <= {i for i in some_ids if i.startswith("base-")}
        if not found:
            assert index.delete(some_ids, missing_ok=True) == 0
    assert _fingerprint(index) == before


ops = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
                       "$where", "$regex", "$or", "$exists", "$not", "; DROP TABLE documents"])
fields = st.one_of(st.sampled_from(["group", "n", "even", "tag", "list", "nested", "missing",
                                    SQLISH[0], "$and", "$or", "a.b"]), texts)
operands = st.one_of(json_scalar, st.lists(json_scalar, max_size=4),
                     st.integers(2**63, 2**70), st.just(float("nan")))
conditions = st.one_of(json_scalar, st.dictionaries(ops, operands, max_size=2), st.lists(json_scalar))
filters = st.recursive(
    st.dictionaries(fields, conditions, max_size=3),
    lambda inner: st.dictionaries(st.sampled_from(["$and", "$or"]), st.lists(inner, max_size=3),
                                  min_size=1, max_size=1),
    max_leaves=4,
) | st.sampled_from(["group = 'g1'", 42, ["a"]])


@SETTINGS
@given(filters)
def test_filters_match_their_definition_or_are_rejected(index, spec):
    query = np.random.default_rng(0).standard_normal((8, index.dimension)).astype(np.float32)
    before = _fingerprint(index)
    try:
        parsed = parse_filter(spec)
    except InvalidInputError:
        with pytest.raises(InvalidInputError):
            index.search_encoded(query, k=50, filter=spec)
    else:
        hits = index.search_encoded(query, k=50, filter=spec)
        every = index.get([f"base-{i}" for i in range(20)])
        assert {h.id for h in hits} == {d.id for d in every if matches(parsed, d.metadata)}
    assert _fingerprint(index) == before


@SETTINGS
@given(st.one_of(st.integers(-5, 10**6), st.integers(10**6, 10**20), st.floats(), st.booleans(),
                 st.none(), st.text(max_size=3)))
def test_k_any_value(index, k):
    query = np.random.default_rng(1).standard_normal((8, index.dimension)).astype(np.float32)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100_000:
        with pytest.raises(InvalidInputError):
            index.search_encoded(query, k=k)
    else:
        assert len(index.search_encoded(query, k=k)) == min(k, index.count())


# -- long texts, wrong models, paths, pickles ----------------------------------------------------
def test_a_one_megabyte_text_is_truncated_with_one_warning(tiny_model, tmp_path):
    index = EmbeddedIndex.open_or_create(tmp_path / "index", model=tiny_model,
                                         long_documents="truncate")
    huge = "river " * 200_000  # 1.2 MB
    before = index.count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index.add([huge, "short one", huge], ids=["huge-1", "short", "huge-2"])
    messages = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("2 of 3 document(s)")
    assert index.get(["huge-1"])[0].text == huge  # the text is stored whole; only vectors cut
    assert index.search("river", k=1)[0].id in {"huge-1", "huge-2"}
    index.delete(["huge-1", "short", "huge-2"])
    assert index.count() == before
    index.close()


def test_truncation_warning_counts_only_texts_over_the_limit(tiny_model):
    budget = tiny_model.document_length - 1  # PyLate's [D] prefix takes one position
    fits = " ".join(["river"] * (budget - 2))  # + [CLS] and [SEP]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (emb,) = tiny_model.encode_documents([fits])
    assert len(emb) == budget + 1
    with pytest.warns(UserWarning, match="1 of 2 document"):
        tiny_model.encode_documents([fits, fits + " river"])


def test_wrong_model_and_wrong_dimension(index, tmp_path):
    with pytest.raises(IndexMismatchError, match="was built with the model"):
        EmbeddedIndex(index.path, model=ColBERTModel("offline-minilm"), create=False)
    with pytest.raises(IndexMismatchError, match="32-d"):
        index.add_encoded([np.ones((3, 16), np.float32)], ["wrong width"])
    with pytest.raises(InvalidInputError, match="shape"):
        index.search_encoded(np.ones((3, 16), np.float32))
    assert index.count() == 20


def test_ids_never_become_paths(tmp_path):
    folder = tmp_path / "deep" / "index"
    with EmbeddedIndex(folder, model=HashEncoder()) as ix:
        evil = ["../../escaped", "/etc/passwd", "..\\..\\escaped", "vectors-0.f16",
                "graph-0-1.voy", "manifest.json", "~/x", "nul\u2024txt"]
        ix.add([f"doc {i}" for i in range(len(evil))], ids=evil)
        ix.flush()
        assert [d.id for d in ix.get(evil)] == evil
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and folder not in p.parents
                  ) == []
    assert {p.name for p in folder.iterdir()} <= {
        "manifest.json", "documents.sqlite", "write.lock", "vectors-0.u8", "vectors-0.json",
        f"graph-0-{8 * 2}.voy", f"means-0-{8 * 2}.npz", "documents.sqlite-wal",
        "documents.sqlite-shm", "lexical-8"}


@pytest.mark.parametrize("target", ["manifest.json", "documents.sqlite", "graph", "means",
                                    "vectors-0.u8", "vectors-0.json"])
def test_a_pickle_planted_in_the_folder_never_runs(tmp_path, target):
    import pickle

    folder = tmp_path / "index"
    with EmbeddedIndex(folder, model=HashEncoder()) as ix:
        ix.add(["some words here", "more words there"], ids=["a", "b"])
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    cache = {"graph": "graph-*.voy", "means": "means-*.npz"}.get(target)
    name = next(folder.glob(cache)).name if cache else target
    (folder / name).write_bytes(pickle.dumps(Payload()))
    try:
        with EmbeddedIndex(folder, model=HashEncoder(), create=False) as ix:
            ix.search("words", k=2)
    except ColbridgeError:
        pass  # a typed refusal is the expected outcome for most targets
    from colbridge.check import check_index

    # The means are a cache read without pickle: the open recomputes them and the close saves
    # them again, so that folder checks clean afterwards. Every other target stays refused.
    assert check_index(folder).ok is (target == "means")
    assert not marker.exists()


def test_no_persisted_format_can_unpickle():
    """np.load is only ever called with allow_pickle=False, and nothing imports pickle."""
    import pathlib
    import re

    import colbridge

    root = pathlib.Path(colbridge.__file__).parent
    for source in root.rglob("*.py"):
        code = source.read_text("utf-8")
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib|shelve)\b", code, re.M), source
        for call in re.findall(r"np\.load\([^)]*\)", code):
            assert "allow_pickle=False" in call, (source, call)


# -- the CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, tiny_model_path):
    folder = tmp_path_factory.mktemp("cli") / "index"
    with EmbeddedIndex(folder, model=ColBERTModel(tiny_model_path, device="cpu")) as ix:
        ix.add([f"passage {i} on rivers" for i in range(12)], ids=[f"p{i}" for i in range(12)],
               metadatas=[{"n": i, "even": i % 2 == 0} for i in range(12)])
    return folder


cli_strings = st.one_of(st.text(max_size=20),
                        st.text(alphabet=st.characters(categories=["Cs", "Cc", "Cf"]), max_size=5),
                        st.sampled_from(SQLISH))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cli_strings, st.one_of(st.none(), cli_strings, filters.map(json.dumps)),
       st.sampled_from(["3", "0", "-1", "x", "1000000000"]))
def test_cli_search_exits_cleanly(cli_index, query, filter_text, k):
    from typer.testing import CliRunner

    from colbridge.cli import app

    args = ["search", query, "--index", str(cli_index), "-k", k, "--json"]
    if filter_text is not None:
        args += ["--filter", filter_text]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1, 2), result.output  # 2: click rejected "-k x"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 0:
        hits = json.loads(result.stdout)
        assert len(hits) <= int(k)
    else:
        assert "error" in result.output.lower() or "invalid value" in result.output.lower()
    if text_ok(query) and k == "3" and filter_text is None:
        assert result.exit_code == 0


def test_cli_check_on_hostile_folders(tmp_path, cli_index):
    from typer.testing import CliRunner

    from colbridge.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["check", "--index", str(cli_index)]).exit_code == 0
    (tmp_path / "notes.txt").write_text("not an index")
    for folder in (tmp_path, tmp_path / "notes.txt"):
        result = runner.invoke(app, ["check", "--index", str(folder)])
        assert result.exit_code == 1 and "problem" in result.output
    absent = runner.invoke(app, ["check", "--index", str(tmp_path / "absent")])
    assert absent.exit_code == 1 and "no colbridge index at" in absent.output  # as search, info
    assert not (tmp_path / "absent").exists()
    assert (tmp_path / "notes.txt").read_text() == "not an index"


# -- the adapters --------------------------------------------------------------------------------
@SETTINGS
@given(st.lists(st.tuples(texts, texts, metadatas), min_size=1, max_size=2), texts)
def test_langchain_vector_store(index, records, query):
    from langchain_colbridge import ColBERTVectorStore

    store = ColBERTVectorStore(index)
    batch_texts, batch_ids, batch_metas = (list(x) for x in zip(*records))
    before = _fingerprint(index)
    given_ids = [i for i in batch_ids if i]  # the store generates ids for empty ones
    valid = (all(text_ok(t) for t in batch_texts) and all(id_ok(i) for i in given_ids)
             and len(set(given_ids)) == len(given_ids) and all(meta_ok(m) for m in batch_metas)
             and not any(i.startswith("base-") for i in given_ids))
    try:
        added = store.add_texts(batch_texts, batch_metas, ids=batch_ids)
    except ColbridgeError:
        assert not valid
        assert _fingerprint(index) == before
    else:
        assert valid and [a for a, i in zip(added, batch_ids) if i] == given_ids
        assert [d.page_content for d in store.get_by_ids(added)] == batch_texts
        store.delete(added)
    try:
        docs = store.similarity_search(query, k=2)
    except ColbridgeError:
        assert not text_ok(query)
    else:
        assert text_ok(query) and len(docs) == 2
    assert _fingerprint(index) == before


@SETTINGS
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=2), texts)
def test_llamaindex_retriever(index, records, query):
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.colbridge import ColBERTRetriever

    retriever = ColBERTRetriever(index, similarity_top_k=2)
    before = _fingerprint(index)
    node_ids = [i for _, i in records]
    valid = (all(text_ok(t) for t, _ in records) and all(id_ok(i) for i in node_ids)
             and len(set(node_ids)) == len(node_ids)
             and not any(i.startswith("base-") for i in node_ids))
    try:
        nodes = [TextNode(text=t, id_=i) for t, i in records]
        stored = retriever.insert_nodes(nodes)
    except (ColbridgeError, ValueError):
        assert not valid
        assert _fingerprint(index) == before
    else:
        assert valid and stored == node_ids
        index.delete(node_ids)
    try:
        found = retriever.retrieve(query)
    except ColbridgeError:
        assert not text_ok(query)
    else:
        assert text_ok(query) and len(found) == 2
    assert _fingerprint(index) == before
