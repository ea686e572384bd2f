"""A filter naming a field that no document has says so, and matches nothing as before."""

from __future__ import annotations

import warnings

import pytest


def test_a_field_no_document_has_is_reported(small_index):
    with pytest.warns(UserWarning, match=r"no document has the metadata field 'topc'"):
        assert small_index.search("alpha", k=3, filter={"topc": "cooking"}) == []
    with pytest.warns(UserWarning, match="'topc'") as caught:
        hits = small_index.search("alpha", k=3, mode="bm25",
                                  filter={"group": "g1", "topc": {"$in": ["a"]}})
    assert hits == [] and "'group'" not in str(caught[0].message)


async def test_async_search_reports_it_too(small_index):
    with pytest.warns(UserWarning, match="'topc'"):
        assert await small_index.asearch("alpha", k=3, filter={"topc": "cooking"}) == []


def test_no_warning_when_the_field_exists_or_the_filter_matches(small_index):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert small_index.search("alpha", k=3, filter={"group": "nowhere"}) == []
        assert len(small_index.search("alpha", k=3, filter={"group": "g1"})) == 2
        # $ne on a missing field matches every document: nothing to report
        assert len(small_index.search("alpha", k=3, filter={"topc": {"$ne": "x"}})) == 3
