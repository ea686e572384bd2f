"""The encoder backends: the ONNX Runtime export against PyTorch, token for token and vector for
vector; its cache; the choice of the default; the torch-free query path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from colbridge import ColBERTModel, Encoder, InvalidInputError, ModelLoadError
from colbridge.models import colbert as colbert_module
from colbridge.models import onnx as onnx_backend

# Mixed lengths in one batch: one token, a sentence, punctuation (the skiplist), a text past
# document_length (truncation), unicode, and repeats that sort into the middle of a batch.
TEXTS = [
    "a",
    "Late interaction, as in ColBERT: one vector per token!",
    "word " * 120,
    "Ünïcödé — déjà vu; naïve café (42%).",
    "short one",
    "What does MaxSim compute? It sums, over query tokens, the best match in the document.",
    "x",
    "a b c d e f g h i j k l m n o p",
]


@pytest.fixture(scope="module")
def onnx_model(tiny_model_path, tmp_path_factory):
    os.environ["COLBRIDGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("exports"))
    try:
        model = ColBERTModel(tiny_model_path, backend="onnx", batch_size=3)
        model.load()
    finally:
        os.environ["COLBRIDGE_CACHE_DIR"] = str(Path(__file__).parents[2] / ".colbridge-cache")
    return model


def _pylate_ids(model: ColBERTModel, texts: list[str], *, is_query: bool) -> list[list[int]]:
    """The token ids PyLate feeds its transformer, padding removed for documents."""
    features = model.load().tokenize(texts, is_query=is_query)
    ids = features["input_ids"].tolist()
    if is_query:
        return ids
    mask = features["attention_mask"].tolist()
    return [[t for t, m in zip(row, keep, strict=True) if m] for row, keep in zip(ids, mask,
                                                                                    strict=True)]


def test_token_ids_are_pylates(torch_model, onnx_model):
    runtime = onnx_model.load()
    docs, truncated = runtime.tokenize(TEXTS, is_query=False, length=torch_model.document_length)
    assert docs == _pylate_ids(torch_model, TEXTS, is_query=False)
    assert truncated == 1  # "word " * 120 is past document_length 64
    queries, _ = runtime.tokenize(TEXTS, is_query=True, length=torch_model.query_length)
    pylate_queries = _pylate_ids(torch_model, TEXTS, is_query=True)
    # PyLate pads queries with [MASK] to query_length; ours are padded when they run.
    mask_id = torch_model.load().tokenizer.mask_token_id
    padded = [row + [mask_id] * (torch_model.query_length - len(row)) for row in queries]
    assert padded == pylate_queries
    assert all(row[1] == torch_model.load().query_prefix_id for row in queries)


def test_vectors_match_pytorch_on_mixed_length_batches(torch_model, onnx_model):
    for is_query in (True, False):
        encode = "encode_queries" if is_query else "encode_documents"
        with pytest.warns(UserWarning) if not is_query else _no_check():
            reference = getattr(torch_model, encode)(TEXTS)
        with pytest.warns(UserWarning) if not is_query else _no_check():
            ours = getattr(onnx_model, encode)(TEXTS)
        for ref, got in zip(reference, ours, strict=True):
            assert got.shape == ref.shape and got.dtype == np.float32
            assert (ref * got).sum(axis=1).min() > 0.9999
    # one text alone, so no padding at all, gives the same vectors as inside a batch
    alone = onnx_model.encode_documents([TEXTS[1]])[0]
    np.testing.assert_allclose(alone, onnx_model.encode_documents(TEXTS[1:3])[0], atol=1e-5)


class _no_check:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_lengths_and_pooling_follow_the_torch_backend(tiny_model_path, onnx_model, torch_model):
    short = ColBERTModel(tiny_model_path, backend="onnx", query_length=8, document_length=10)
    short._runtime = onnx_model.load()  # the same export, other lengths
    assert short.encode_query("what").shape == (8, onnx_model.dimension)
    assert len(short.encode_documents(["word " * 50])[0]) <= 10
    text = "late interaction keeps one vector for every token in the passage " * 3
    pooled = onnx_model.encode_documents([text], pool_factor=2)[0]
    reference = torch_model.encode_documents([text], pool_factor=2)[0]
    assert pooled.shape == reference.shape
    np.testing.assert_allclose(pooled, reference, atol=1e-4)


def test_export_is_cached_and_keyed_by_the_weights(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("COLBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "model"
    import shutil

    shutil.copytree(tiny_model_path, source)
    first = onnx_backend.open_runtime(source, int8=False)
    assert first.folder.parent == tmp_path / "cache" / "exports"
    assert not [p for p in first.folder.parent.iterdir() if ".building-" in p.name]

    calls = []
    monkeypatch.setattr(onnx_backend, "_export", lambda *a, **k: calls.append(a))
    assert onnx_backend.open_runtime(source, int8=False).folder == first.folder
    assert calls == []  # reused, not exported again

    (source / "README.md").write_text("a new model card changes no vector")
    assert onnx_backend.export_folder(source, int8=False) == first.folder
    weights = next(source.rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # changed weights: stale export
    assert onnx_backend.export_folder(source, int8=False) != first.folder
    assert onnx_backend.export_folder(source, int8=True) != first.folder  # other recipe


def test_a_half_written_export_is_rebuilt(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("COLBRIDGE_CACHE_DIR", str(tmp_path))
    folder = onnx_backend.export_folder(tiny_model_path, int8=False)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"truncated")  # no encoder.json: never completed
    runtime = onnx_backend.open_runtime(tiny_model_path, int8=False)
    assert runtime.spec.cosine > 0.9999


def test_an_export_below_the_quality_bar_is_refused(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("COLBRIDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(onnx_backend._MIN_COSINE, False, 1.01)  # no export can reach it
    with pytest.raises(ModelLoadError, match="backend='torch'"):
        onnx_backend.open_runtime(tiny_model_path, int8=False)
    left = [p.name for p in (tmp_path / "exports").iterdir() if not p.name.startswith(".")]
    assert left == []  # no export folder, complete or not (only the lock and the digest stamp)


def test_a_default_that_fails_its_bar_steps_down(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("COLBRIDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(colbert_module, "default_backend", lambda device=None: "onnx-int8")
    monkeypatch.setitem(onnx_backend._MIN_COSINE, True, 1.01)
    chosen = ColBERTModel(tiny_model_path)
    chosen.load()
    assert chosen.backend == "onnx"
    with pytest.raises(ModelLoadError):
        ColBERTModel(tiny_model_path, backend="onnx-int8").load()


def test_backend_arguments_are_checked(tiny_model_path, torch_model):
    with pytest.raises(InvalidInputError, match="unknown backend"):
        ColBERTModel(tiny_model_path, backend="tensorflow")
    with pytest.raises(InvalidInputError, match="CPU"):
        ColBERTModel(tiny_model_path, backend="onnx", device="cuda")
    with pytest.raises(InvalidInputError, match="PyTorch"):
        ColBERTModel(torch_model.load(), backend="onnx")
    assert ColBERTModel(torch_model.load()).backend == "torch"
    assert isinstance(torch_model, Encoder)


@pytest.mark.parametrize(
    ("installed", "bf16", "device", "gpu", "expected"),
    [
        ({"onnxruntime", "openvino"}, True, "cpu", False, "openvino"),
        ({"onnxruntime", "openvino"}, True, None, False, "openvino"),
        ({"onnxruntime", "openvino"}, False, "cpu", False, "onnx"),  # f32 OpenVINO: slower
        ({"onnxruntime"}, True, "cpu", False, "onnx"),  # without colbridge[openvino]
        ({"onnxruntime"}, False, None, False, "onnx"),
        (set(), True, "cpu", False, "torch"),  # without colbridge[onnx]
        ({"onnxruntime", "openvino"}, True, "cuda", False, "torch"),  # half precision
        ({"onnxruntime", "openvino"}, True, None, True, "torch"),  # a GPU is visible
        ({"onnxruntime", "openvino"}, True, "cpu", True, "openvino"),  # CPU asked for by name
    ],
)
def test_default_backend_rule(monkeypatch, installed, bf16, device, gpu, expected):
    """openvino where OpenVINO is installed and the CPU computes bfloat16, else onnx where
    onnxruntime is installed, else torch; GPUs keep torch (docs/benchmarks.md)."""
    from colbridge.models import openvino as openvino_backend

    monkeypatch.delenv("COLBRIDGE_BACKEND", raising=False)
    monkeypatch.setattr(colbert_module, "_gpu_visible", lambda: gpu)
    monkeypatch.setattr(colbert_module.importlib.util, "find_spec",
                        lambda name: object() if name in installed else None)
    asked = []
    monkeypatch.setattr(openvino_backend, "cpu_has_bf16", lambda: asked.append(1) or bf16)
    assert colbert_module.default_backend(device) == expected
    # The capability is only asked where the answer decides (it imports OpenVINO).
    assert bool(asked) == (expected in ("openvino", "onnx") and "openvino" in installed)


def test_the_environment_overrides_the_default(monkeypatch):
    monkeypatch.setenv("COLBRIDGE_BACKEND", "onnx")
    assert colbert_module.default_backend("cpu") == "onnx"
    assert ColBERTModel("offline-minilm").backend == "onnx"


def query_path_report(model: ColBERTModel, model_path, backend: str) -> list[str]:
    """In a new process sharing ``model``'s export cache, encode a query with ``backend`` and
    print the vector's shape and whether torch and pylate were imported (split into words)."""
    cache = model.load().folder.parents[1]
    code = (
        "import sys\n"
        "from colbridge import ColBERTModel\n"
        f"m = ColBERTModel({str(model_path)!r}, backend={backend!r})\n"
        "v = m.encode_query('hello there')\n"
        "print(v.shape, 'torch' in sys.modules, 'pylate' in sys.modules)\n"
    )
    env = {**os.environ, "COLBRIDGE_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True, timeout=120).stdout.split()


def test_query_path_imports_neither_torch_nor_pylate(onnx_model, tiny_model_path):
    out = query_path_report(onnx_model, tiny_model_path, "onnx")
    assert out == [f"({onnx_model.query_length},", f"{onnx_model.dimension})", "False", "False"]


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_offline_minilm_tokens_and_vectors_agree_with_pytorch(backend):
    """The real model: identical token ids, and vectors within the recipe's bar."""
    reference = ColBERTModel("offline-minilm", backend="torch", device="cpu")
    model = ColBERTModel("offline-minilm", backend=backend)
    texts = TEXTS[:2] + TEXTS[3:]
    assert model.load().tokenize(texts, is_query=False, length=300)[0] == _pylate_ids(
        reference, texts, is_query=False)
    for encode in ("encode_queries", "encode_documents"):
        ref = getattr(reference, encode)(texts)
        got = getattr(model, encode)(texts)
        cosine = np.concatenate([(a * b).sum(axis=1) for a, b in zip(ref, got, strict=True)])
        assert cosine.mean() >= onnx_backend._MIN_COSINE[backend == "onnx-int8"] - 0.005


def test_int8_vectors_of_a_text_do_not_depend_on_its_batch(tiny_model_path, tmp_path,
                                                           monkeypatch):
    """Dynamic int8 scales activations per call: a batch would mix neighbours into a text."""
    monkeypatch.setenv("COLBRIDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(onnx_backend._MIN_COSINE, True, 0.0)  # the tiny random model's int8
    model = ColBERTModel(tiny_model_path, backend="onnx-int8", batch_size=8)
    alone = model.encode_documents([TEXTS[1]])[0]
    np.testing.assert_array_equal(model.encode_documents(TEXTS[:2] + TEXTS[3:])[1], alone)
    query = model.encode_query(TEXTS[5])
    np.testing.assert_array_equal(model.encode_queries(TEXTS[4:7])[1], query)


def test_an_index_records_int8_vectors_and_refuses_a_float32_encoder(tiny_model_path, tmp_path,
                                                                     monkeypatch):
    """torch and onnx vectors are the same family; int8 ones kept only 0.91 of the exact top 10
    against torch's documents (docs/benchmarks.md), so an int8 index says so."""
    import json

    from colbridge import EmbeddedIndex, IndexMismatchError

    monkeypatch.setenv("COLBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(onnx_backend._MIN_COSINE, True, 0.0)
    int8 = ColBERTModel(tiny_model_path, backend="onnx-int8", name="tiny")
    with EmbeddedIndex(tmp_path / "int8", model=int8) as index:
        index.add(TEXTS[:3], ids=["a", "b", "c"])
    assert json.loads((tmp_path / "int8" / "manifest.json").read_text())["model"][
        "precision"] == "int8"
    with pytest.raises(IndexMismatchError, match="backend='onnx-int8'"):
        EmbeddedIndex(tmp_path / "int8", model=ColBERTModel(tiny_model_path, backend="onnx",
                                                            name="tiny"))

    exact = ColBERTModel(tiny_model_path, backend="onnx", name="tiny")
    with EmbeddedIndex(tmp_path / "float", model=exact) as index:
        index.add(TEXTS[:3], ids=["a", "b", "c"])
    assert "precision" not in json.loads((tmp_path / "float" / "manifest.json").read_text())[
        "model"]  # older releases still read the default
    torch = ColBERTModel(tiny_model_path, backend="torch", name="tiny")
    with EmbeddedIndex(tmp_path / "float", model=torch) as index:  # same family: fine
        assert index.search(TEXTS[1], k=1)[0].id == "b"
    with pytest.raises(IndexMismatchError, match="backend='onnx'"):
        EmbeddedIndex(tmp_path / "float", model=int8)
    with EmbeddedIndex(tmp_path / "int8") as index:  # no model: the recorded family
        assert index.model.backend == "onnx-int8"
    monkeypatch.setenv("COLBRIDGE_BACKEND", "onnx-int8")  # asks for the other family
    with pytest.raises(IndexMismatchError):
        EmbeddedIndex(tmp_path / "float")
