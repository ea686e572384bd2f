"""Filters: validation, and the SQL compilation agrees with the Python meaning."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colbridge import InvalidInputError
from colbridge.filters import matches, parse_filter, to_sql


@pytest.mark.parametrize(
    "spec",
    [
        "topic = 'x'",
        {"$or": [{"a": 1}]},
        {"a": {"$regex": "x"}},
        {"a": {"$in": "not a list"}},
        {"a": {"$gt": [1]}},
        {"a": {"$gte": None}},
        {"a": {}},
        {"a": {"$eq": {"nested": 1}}},
        {"a": float("nan")},
        {"$and": []},
        {"": 1},
    ],
)
def test_bad_filters_are_rejected(spec):
    with pytest.raises(InvalidInputError):
        parse_filter(spec)


def test_unknown_operator_message_lists_the_supported_ones():
    with pytest.raises(InvalidInputError, match=r"\$regex.*supported: \$eq"):
        parse_filter({"a": {"$regex": "x"}})


def _sqlite_matches(spec, metadatas):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE d (n INTEGER, metadata TEXT)")
    conn.executemany("INSERT INTO d VALUES (?, ?)", [(i, json.dumps(m)) for i, m in enumerate(metadatas)])
    where, params = to_sql(parse_filter(spec))
    return {n for (n,) in conn.execute(f"SELECT n FROM d WHERE {where}", params)}


DOCS = [
    {"topic": "cooking", "year": 1990, "score": 0.5, "flag": True},
    {"topic": "music", "year": 2005, "flag": False},
    {"topic": "cooking", "year": 2020, "tags": ["a"], "note": None},
    {"year": "2001"},
    {},
]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"topic": "cooking"}, {0, 2}),
        ({"topic": {"$ne": "cooking"}}, {1, 3, 4}),
        ({"topic": {"$in": ["music", "gardening"]}}, {1}),
        ({"topic": {"$nin": ["music"]}}, {0, 2, 3, 4}),
        ({"year": {"$gte": 2000, "$lt": 2021}}, {1, 2}),  # the string "2001" is not a number
        ({"year": {"$gt": "2000"}}, {3}),
        ({"flag": True}, {0}),
        ({"note": None}, {2}),
        ({"$and": [{"topic": "cooking"}, {"year": {"$lte": 1990}}]}, {0}),
        ({"topic'; DROP TABLE d; --": "x"}, set()),
    ],
)
def test_sql_and_python_agree_on_examples(spec, expected):
    assert _sqlite_matches(spec, DOCS) == expected
    assert {i for i, m in enumerate(DOCS) if matches(parse_filter(spec), m)} == expected


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", "c"]),
                    st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 1)))
fields = st.sampled_from(["a", "b", 'we"ird', "c.d"])
metadata = st.dictionaries(fields, scalars, max_size=3)
conditions = st.one_of(
    st.builds(lambda f, v: {f: v}, fields, scalars),
    st.builds(lambda f, op, v: {f: {op: v}}, fields,
              st.sampled_from(["$eq", "$ne"]), scalars),
    st.builds(lambda f, op, v: {f: {op: v}}, fields, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
              st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b"]))),
    st.builds(lambda f, op, vs: {f: {op: vs}}, fields, st.sampled_from(["$in", "$nin"]),
              st.lists(scalars, max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(spec=conditions, docs=st.lists(metadata, min_size=1, max_size=6))
def test_sql_and_python_agree_on_random_filters(spec, docs):
    expected = {i for i, m in enumerate(docs) if matches(parse_filter(spec), m)}
    assert _sqlite_matches(spec, docs) == expected
