"""The model wrapper: shapes, lengths, lazy loading, errors, offline stand-in."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest
from colbridge import ColBERTModel, InvalidInputError, ModelLoadError


def test_query_encoding_is_padded_to_query_length(tiny_model):
    short, long = tiny_model.encode_queries(["hi", "a much longer question about many things"])
    assert short.shape == long.shape == (tiny_model.query_length, tiny_model.dimension)
    assert short.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)


def test_document_encoding_keeps_real_tokens_and_truncates(tiny_model):
    short, long = tiny_model.encode_documents(["two words", "word " * 500])
    assert 1 <= len(short) < len(long) <= tiny_model.document_length
    assert short.shape[1] == tiny_model.dimension


def test_pool_factor_reduces_stored_tokens(tiny_model):
    text = "late interaction keeps one vector for every token in the passage " * 3
    full, = tiny_model.encode_documents([text])
    pooled, = tiny_model.encode_documents([text], pool_factor=2)
    assert len(pooled) < len(full)


def test_lengths_can_be_overridden(tiny_model_path):
    model = ColBERTModel(tiny_model_path, query_length=8, document_length=10, device="cpu")
    assert model.encode_query("what").shape[0] == 8
    assert len(model.encode_documents(["word " * 50])[0]) <= 10


def test_wrapper_is_lazy_until_first_use(tiny_model_path):
    model = ColBERTModel(tiny_model_path, device="cpu")
    assert not model.loaded
    model.encode_query("load now")
    assert model.loaded


def test_name_identity(tiny_model_path):
    assert ColBERTModel(tiny_model_path).name == str(tiny_model_path.resolve())
    assert ColBERTModel("some/hub-id").name == "some/hub-id"
    assert ColBERTModel(tiny_model_path, name="mine").name == "mine"


def test_environment_sets_default_model(monkeypatch):
    monkeypatch.setenv("COLBRIDGE_MODEL", "offline-minilm")
    assert ColBERTModel().name == "offline-minilm"
    monkeypatch.delenv("COLBRIDGE_MODEL")
    assert ColBERTModel().name == "lightonai/answerai-colbert-small-v1"


@pytest.mark.parametrize("bad", ["", "   ", None, 3, ["fine", ""]])
def test_bad_texts_are_rejected(tiny_model, bad):
    with pytest.raises(InvalidInputError):
        tiny_model.encode_documents(bad if isinstance(bad, list) else [bad])


def test_a_lone_string_is_not_read_as_characters(tiny_model):
    with pytest.raises(InvalidInputError, match="list of strings"):
        tiny_model.encode_documents("not a list")


def test_unknown_hub_model_raises_typed_error_with_offline_hint():
    with pytest.raises(ModelLoadError, match="offline-minilm") as info:
        ColBERTModel("no-such-org/no-such-colbert").load()
    assert "no-such-org/no-such-colbert" in str(info.value)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="not a model folder"):
        ColBERTModel(tmp_path).load()


def test_offline_model_is_reproducible(offline_model, tmp_path, monkeypatch):
    """A fresh build of offline-minilm (new cache folder) gives the same vectors."""
    monkeypatch.setenv("COLBRIDGE_CACHE_DIR", str(tmp_path))
    rebuilt = ColBERTModel("offline-minilm", device="cpu")
    query = "reproducible projections"
    np.testing.assert_allclose(rebuilt.encode_query(query), offline_model.encode_query(query),
                               atol=1e-5)
    assert (offline_model.dimension, offline_model.query_length, offline_model.document_length) == (
        96, 32, 300)


async def test_concurrent_async_queries_share_batches(tiny_model, monkeypatch):
    calls: list[int] = []
    original = tiny_model.encode_queries

    def counting(queries):
        calls.append(len(queries))
        return original(queries)

    monkeypatch.setattr(tiny_model, "encode_queries", counting)
    monkeypatch.setattr(tiny_model._query_coalescer, "_batch_fn", counting)
    results = await asyncio.gather(*(tiny_model.aencode_query(f"query {i}") for i in range(12)))
    assert len(results) == 12 and sum(calls) == 12
    assert len(calls) < 12  # coalesced into shared encoder calls
    np.testing.assert_allclose(results[3], original(["query 3"])[0], atol=1e-5)


@pytest.mark.parametrize("spec", ["./no/such/folder", "/no/such/folder", "~/no-such-colbert",
                                  "no/such/model/folder"])
def test_a_name_that_looks_like_a_path_says_no_such_folder(spec):
    with pytest.raises(ModelLoadError, match="no such folder") as info:
        ColBERTModel(spec).load()
    assert "hub" not in str(info.value)


@pytest.mark.parametrize("typo, meant", [("offline-minlm", "offline-minilm"),
                                         ("ofline-minilm", "offline-minilm"),
                                         ("lightonai/answerai-colbert-small-v2",
                                          "lightonai/answerai-colbert-small-v1")])
def test_a_near_miss_of_a_known_name_suggests_it(typo, meant):
    with pytest.raises(ModelLoadError, match=f"did you mean '{meant}'"):
        ColBERTModel(typo).load()


def test_an_uncached_model_with_the_hub_switched_off_fails_fast_and_cleanly():
    """With HF_HUB_OFFLINE=1 the error comes before PyLate or PyTorch is imported, in one clean
    sentence (no leaked exception text, no doubled full stop, no stray log line)."""
    code = (
        "import sys\n"
        "from colbridge import ColBERTModel, ModelLoadError\n"
        "try:\n"
        "    ColBERTModel('no-such-org/no-such-colbert').load()\n"
        "except ModelLoadError as e:\n"
        "    print(e)\n"
        "heavy = ('torch', 'pylate', 'sentence_transformers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    message, modules = done.stdout.strip().splitlines()
    assert "'no-such-org/no-such-colbert' is not in the local Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message and "offline-minilm" in message
    assert ".." not in message and "Error:" not in message
    assert modules == "[]"
    assert "No sentence-transformers model found" not in done.stderr


_HEARTBEAT = """
import asyncio, sys, time
from colbridge import ColBERTModel

async def worst_stall(work):
    # The longest the event loop went without running a 5 ms heartbeat while `work` ran.
    gaps, done = [0.0], asyncio.Event()
    async def beat():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            gaps.append(time.perf_counter() - last)
            last = time.perf_counter()
    beating = asyncio.create_task(beat())
    await work()
    done.set()
    await beating
    return max(gaps) * 1000

async def main(folder):
    cold = ColBERTModel(folder, device="cpu")  # imports PyTorch and PyLate on first use
    cold_ms = await worst_stall(lambda: cold.aencode_query("first question"))
    warm = ColBERTModel(folder, device="cpu")
    warm.load()  # the documented warm-up
    warm_ms = await worst_stall(lambda: warm.aencode_query("first question"))
    print(round(cold_ms), round(warm_ms))

asyncio.run(main(sys.argv[1]))
"""


def test_load_is_the_warm_up_that_keeps_the_event_loop_running(tiny_model_path):
    """The first async call on a model given by name imports and loads in a worker thread, and
    that thread holds the GIL in long stretches (native library init, compiling modules), so the
    loop stalls; after ``load()`` the first async call does not stall it."""
    done = subprocess.run([sys.executable, "-c", _HEARTBEAT, str(tiny_model_path)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    cold_ms, warm_ms = map(int, done.stdout.split())
    assert warm_ms < 100, (cold_ms, warm_ms)
    assert cold_ms > warm_ms
