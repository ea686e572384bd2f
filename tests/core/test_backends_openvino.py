"""The OpenVINO backend: the onnx export run by OpenVINO (bfloat16 where the CPU has it) against
PyTorch, vector for vector; the choice of the default; the error without openvino."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from colbridge import ColBERTModel, EmbeddedIndex, ModelLoadError
from colbridge.models import colbert as colbert_module
from colbridge.models import openvino as openvino_backend

from .test_backends import TEXTS, query_path_report

# bfloat16 keeps 8 bits of mantissa: token vectors agree with float32 PyTorch to about 0.9999
# on average (docs/benchmarks.md); the bar below is the quality bar, per token.
MIN_TOKEN_COSINE = 0.99


@pytest.fixture(scope="module")
def openvino_model(tiny_model_path, tmp_path_factory):
    pytest.importorskip("openvino")
    os.environ["COLBRIDGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("exports"))
    try:
        model = ColBERTModel(tiny_model_path, backend="openvino", batch_size=3)
        model.load()
    finally:
        os.environ["COLBRIDGE_CACHE_DIR"] = str(Path(__file__).parents[2] / ".colbridge-cache")
    return model


def _cosines(reference: list[np.ndarray], ours: list[np.ndarray]) -> np.ndarray:
    for ref, got in zip(reference, ours, strict=True):
        assert got.shape == ref.shape and got.dtype == np.float32
    return np.concatenate([(a * b).sum(axis=1) for a, b in zip(reference, ours, strict=True)])


def test_vectors_match_pytorch_on_mixed_length_batches(torch_model, openvino_model):
    """Batches of 3 mix one-token texts, sentences and a truncated one: padding of every width."""
    for encode in ("encode_queries", "encode_documents"):
        if encode == "encode_documents":
            with pytest.warns(UserWarning):
                reference = torch_model.encode_documents(TEXTS)
            with pytest.warns(UserWarning):
                ours = openvino_model.encode_documents(TEXTS)
        else:
            reference = torch_model.encode_queries(TEXTS)
            ours = openvino_model.encode_queries(TEXTS)
        assert _cosines(reference, ours).min() >= MIN_TOKEN_COSINE
    # a text alone (no padding) gives the vectors it gets inside a padded batch
    alone = openvino_model.encode_documents([TEXTS[1]])[0]
    batched = openvino_model.encode_documents(TEXTS[:2] + TEXTS[3:])[1]
    assert _cosines([alone], [batched]).min() > 0.999


def test_it_reuses_the_onnx_export_and_tokenization(openvino_model, tiny_model_path):
    runtime = openvino_model.load()
    assert isinstance(runtime, openvino_backend.OpenVinoRuntime)
    assert runtime.folder.name.split("-")[-2] == "onnx"  # the float32 onnx export's folder
    assert runtime.precision == ("bf16" if openvino_backend.cpu_has_bf16() else "f32")
    assert openvino_model.precision == "float32"  # same index family as torch and onnx
    assert openvino_model.backend == "openvino"
    assert any((runtime.folder.parent / ".openvino-cache").iterdir())  # compiled graph kept


def test_openvino_vectors_share_an_index_with_torch(torch_model, openvino_model, tmp_path,
                                                    tiny_model_path):
    openvino = ColBERTModel(tiny_model_path, backend="openvino", name="tiny")
    openvino._runtime = openvino_model.load()
    with EmbeddedIndex(tmp_path / "ix", model=openvino) as index:
        index.add(TEXTS[:2] + TEXTS[3:6], ids=["a", "b", "d", "e", "f"])
    torch = ColBERTModel(tiny_model_path, backend="torch", name="tiny")
    with EmbeddedIndex(tmp_path / "ix", model=torch) as index:  # no IndexMismatchError
        assert index.search(TEXTS[1], k=1)[0].id == "b"


def test_offline_minilm_vectors_agree_with_pytorch():
    pytest.importorskip("openvino")
    reference = ColBERTModel("offline-minilm", backend="torch", device="cpu")
    model = ColBERTModel("offline-minilm", backend="openvino", batch_size=4)
    texts = TEXTS[:2] + TEXTS[3:]
    assert model.load().tokenize(texts, is_query=False, length=reference.document_length)[
        0] == _unpadded(reference, texts)
    for encode in ("encode_queries", "encode_documents"):
        cosine = _cosines(getattr(reference, encode)(texts), getattr(model, encode)(texts))
        assert cosine.min() >= MIN_TOKEN_COSINE
        assert cosine.mean() >= 0.999


def _unpadded(model: ColBERTModel, texts: list[str]) -> list[list[int]]:
    features = model.load().tokenize(texts, is_query=False)
    return [[t for t, m in zip(row, keep, strict=True) if m]
            for row, keep in zip(features["input_ids"].tolist(),
                                 features["attention_mask"].tolist(), strict=True)]


def test_without_openvino_the_error_names_the_extra(tiny_model_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(ModelLoadError, match=r"colbridge\[openvino\]"):
        ColBERTModel(tiny_model_path, backend="openvino").load()
    assert openvino_backend.cpu_has_bf16() is False


def test_the_default_on_this_machine_follows_its_cpu(monkeypatch):
    """The rule of test_default_backend_rule, with the real capability probe."""
    monkeypatch.delenv("COLBRIDGE_BACKEND", raising=False)
    monkeypatch.setattr(colbert_module, "_gpu_visible", lambda: False)
    expected = "openvino" if openvino_backend.cpu_has_bf16() else "onnx"
    assert colbert_module.default_backend("cpu") == expected
    assert ColBERTModel("offline-minilm").backend == expected


def test_the_capability_probe_reads_the_cpu_flags_alone():
    """Where /proc/cpuinfo exists its flags decide, without importing OpenVINO (cold start)."""
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo on this system")
    code = ("import sys; from colbridge.models.openvino import cpu_has_bf16; "
            "print(cpu_has_bf16(), 'openvino' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    flags = set(Path("/proc/cpuinfo").read_text().split())
    installed = importlib.util.find_spec("openvino") is not None
    assert out == [str(bool(flags & {"avx512_bf16", "amx_bf16"}) and installed), "False"]


def test_the_flags_agree_with_openvinos_own_answer():
    """On this machine the flags say what OpenVINO's CPU plugin says."""
    ov = pytest.importorskip("openvino")
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo on this system")
    assert openvino_backend.cpu_has_bf16() == openvino_backend._offers_bf16(ov.Core())


def test_query_path_imports_neither_torch_nor_pylate(openvino_model, tiny_model_path):
    out = query_path_report(openvino_model, tiny_model_path, "openvino")
    assert out == [f"({openvino_model.query_length},", f"{openvino_model.dimension})", "False",
                   "False"]


def test_a_default_openvino_without_openvino_steps_down_to_onnx(tiny_model_path, monkeypatch):
    monkeypatch.setattr(colbert_module, "default_backend", lambda device=None: "openvino")
    monkeypatch.setitem(sys.modules, "openvino", None)
    chosen = ColBERTModel(tiny_model_path)
    chosen.load()
    assert chosen.backend == "onnx"
