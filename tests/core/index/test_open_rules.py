"""Which calls create an index: reads of a missing folder raise and leave nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from colbridge import EmbeddedIndex, IndexCorruptError, IndexNotFoundError


def _reads(index: EmbeddedIndex, dimension: int):
    query = np.ones((4, dimension), np.float32)
    return {
        "search": lambda: index.search("moon", k=3),
        "search_encoded": lambda: index.search_encoded(query, k=3),
        "get": lambda: index.get(["a"]),
        "count": index.count,
        "len": lambda: len(index),
        "stats": index.stats,
        "refresh": index.refresh,
        "delete": lambda: index.delete(["a"], missing_ok=True),
        "flush": index.flush,
        "compact": index.compact,
    }


@pytest.mark.parametrize("name", ["search", "search_encoded", "get", "count", "len", "stats",
                                  "refresh", "delete", "flush", "compact"])
def test_a_read_of_a_missing_folder_raises_and_creates_nothing(tmp_path, tiny_model, name):
    path = tmp_path / "ix-mistakez"
    index = EmbeddedIndex(path, model=tiny_model)
    with pytest.raises(IndexNotFoundError, match="ix-mistakez"):
        _reads(index, 16)[name]()
    index.close()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


async def test_async_reads_of_a_missing_folder_raise_too(tmp_path, tiny_model):
    index = EmbeddedIndex(tmp_path / "absent", model=tiny_model)
    for call in (lambda: index.asearch("moon"), index.acount, lambda: index.aget(["a"])):
        with pytest.raises(IndexNotFoundError, match="absent"):
            await call()
    assert not (tmp_path / "absent").exists()


def test_an_empty_folder_stays_empty_until_the_first_add(tmp_path, tiny_model):
    index = EmbeddedIndex(tmp_path, model=tiny_model)
    with pytest.raises(IndexNotFoundError):
        index.search("moon")
    assert list(tmp_path.iterdir()) == []
    index.add(["the moon is bright"], ids=["m"])
    assert index.count() == 1 and (tmp_path / "manifest.json").exists()
    index.close()


def test_the_first_add_creates_the_index(tmp_path, tiny_model):
    path = tmp_path / "new" / "ix"
    with EmbeddedIndex(path, model=tiny_model) as index:
        assert index.add(["the moon is bright"], ids=["m"]) == ["m"]
        assert index.count() == 1
        assert [h.id for h in index.search("moon", k=3)] == ["m"]
    with EmbeddedIndex(path, model=tiny_model, create=False) as reopened:
        assert reopened.get(["m"])[0].text == "the moon is bright"


def test_an_index_created_elsewhere_after_opening_is_read(tmp_path, tiny_model):
    path = tmp_path / "ix"
    early = EmbeddedIndex(path, model=tiny_model)
    with EmbeddedIndex(path, model=tiny_model) as writer:
        writer.add(["the moon is bright"], ids=["m"])
    assert early.count() == 1
    assert early.get(["m"])[0].id == "m"
    early.close()


def test_create_false_on_a_missing_folder_raises_at_once(tmp_path, tiny_model):
    with pytest.raises(IndexNotFoundError, match="absent") as raised:
        EmbeddedIndex(tmp_path / "absent", model=tiny_model, create=False)
    assert isinstance(raised.value, IndexCorruptError)  # what it raised before this type existed
    assert not (tmp_path / "absent").exists()
