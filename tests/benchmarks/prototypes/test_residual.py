"""The residual codec: round-trip error by bit width, exact packing, determinism, sizes,
a persisted form that reloads identically, and typed errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from colbridge.errors import IndexCorruptError, InvalidInputError

from prototypes.codecs import CODECS, ResidualCodec, codec_class, load_codec
from prototypes.codecs.residual import suggested_centroids

DIM = 32


def clustered(n: int = 3000, clusters: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few directions, the way token vectors bunch."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = spread * rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    x = centres[rng.integers(clusters, size=n)] + noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


SAMPLE = clustered(n=4000)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return SAMPLE[:3000]


@pytest.fixture(scope="module")
def codecs(vectors) -> dict[int, ResidualCodec]:
    return {bits: ResidualCodec.train(vectors, bits=bits, n_centroids=64, seed=1)
            for bits in (2, 4)}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.asarray(a, np.float32) * np.asarray(b, np.float32)).sum(axis=1)


# -- round trip -------------------------------------------------------------------------------

def test_round_trip_error_shrinks_with_bits_and_beats_centroids_alone(vectors, codecs):
    unseen = SAMPLE[3000:]  # around the same directions, but never seen by the codec
    centroid_only = None
    errors = {}
    for bits, codec in codecs.items():
        ids, residuals = codec.encode(unseen)
        decoded = codec.decode(ids, residuals, dtype=np.float32)
        assert decoded.shape == unseen.shape and decoded.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, atol=1e-5)
        errors[bits] = 1 - cosines(decoded, unseen)
        centre = codec.centroids[ids].astype(np.float32)
        centroid_only = 1 - cosines(centre / np.linalg.norm(centre, axis=1, keepdims=True), unseen)
    assert errors[4].mean() < errors[2].mean() / 3
    assert errors[2].mean() < centroid_only.mean() / 3
    assert errors[2].mean() < 0.02 and errors[4].mean() < 0.005  # about half of what it reaches


def test_nearest_neighbours_of_decoded_vectors_overlap_the_exact_ones(vectors, codecs):
    queries = SAMPLE[3000:3050]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    overlap = {}
    for bits, codec in codecs.items():
        decoded = codec.decode(*codec.encode(vectors)).astype(np.float32)
        approx = np.argsort(-(queries @ decoded.T), axis=1)[:, :10]
        shared = [len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)]
        overlap[bits] = np.mean(shared)
    # Neighbours in these tight clusters are nearly tied, so the bounds are loose (measured:
    # 0.70 and 0.86); the real collection is measured in tests/benchmarks/bench_codec.py.
    assert overlap[4] > overlap[2] >= 0.5 and overlap[4] >= 0.7


def test_every_weight_lies_in_its_bucket(codecs):
    for codec in codecs.values():
        inner = codec.weights[:, 1:-1]
        assert (inner >= codec.cutoffs[:, :-1] - 1e-7).all()
        assert (inner <= codec.cutoffs[:, 1:] + 1e-7).all()
        assert (codec.weights[:, 0] <= codec.cutoffs[:, 0] + 1e-7).all()
        assert (codec.weights[:, -1] >= codec.cutoffs[:, -1] - 1e-7).all()


@pytest.mark.parametrize("bits", [2, 4])
def test_buckets_beat_colbertv2_quantile_buckets(vectors, codecs, bits):
    """ColBERTv2 cuts at the residuals' quantiles and decodes to each bucket's mean; the codec's
    least-squares buckets, learned on fewer (held-out) vectors, must still do better."""
    codec, levels = codecs[bits], 1 << bits
    centroids = codec.centroids.astype(np.float32)
    residuals = vectors - centroids[codec.encode(vectors)[0].astype(np.int64)]
    cutoffs = np.quantile(residuals, np.arange(1, levels) / levels, axis=0).T
    buckets = (residuals[:, :, None] > cutoffs[None]).sum(axis=2)
    weights = np.array([[residuals[buckets[:, d] == j, d].mean() for j in range(levels)]
                        for d in range(DIM)])
    quantile = ResidualCodec(codec.centroids, cutoffs, weights, bits)
    unseen = SAMPLE[3000:]
    errors = [np.mean(1 - cosines(c.decode(*c.encode(unseen)), unseen)) for c in (codec, quantile)]
    assert errors[0] < 0.95 * errors[1]


def test_decode_float16_and_nothing(codecs, vectors):
    codec = codecs[4]
    ids, residuals = codec.encode(vectors[:10])
    half = codec.decode(ids, residuals)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, codec.decode(ids, residuals, dtype=np.float32), atol=1e-3)
    empty = codec.decode(ids[:0], residuals[:0])
    assert empty.shape == (0, DIM)


# -- packing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 4])
def test_packing_is_exact(bits):
    """A hand-made codec (one zero centroid; bucket j of dimension d spans (d*L + j, d*L + j + 1])
    encodes each chosen bucket to the bits np.packbits gives, and decodes it to its weight."""
    levels = 1 << bits
    base = np.arange(DIM, dtype=np.float32)[:, None] * levels
    cutoffs = base + np.arange(1, levels, dtype=np.float32)
    weights = base + np.arange(levels, dtype=np.float32) + 0.5
    codec = ResidualCodec(np.zeros((1, DIM), np.float32), cutoffs, weights, bits)
    rng = np.random.default_rng(0)
    buckets = rng.integers(levels, size=(200, DIM)).astype(np.uint8)
    values = np.take_along_axis(weights.T[None].repeat(200, 0), buckets[:, None, :], axis=1)[:, 0]

    ids, residuals = codec.encode(values)

    low_bits = np.unpackbits(buckets[..., None], axis=-1)[..., 8 - bits:]  # MSB first
    expected = np.packbits(low_bits.reshape(200, -1), axis=1)
    assert residuals.dtype == np.uint8 and residuals.shape == (200, DIM * bits // 8)
    np.testing.assert_array_equal(residuals, expected)
    assert (ids == 0).all()
    decoded = codec.decode(ids, residuals, dtype=np.float32)
    np.testing.assert_allclose(decoded, values / np.linalg.norm(values, axis=1, keepdims=True),
                               rtol=1e-6, atol=1e-7)


def test_encoding_in_blocks_changes_nothing(codecs, vectors, monkeypatch):
    from prototypes.codecs import residual

    whole = codecs[4].encode(vectors)
    monkeypatch.setattr(residual, "_ENCODE_ROWS", 7)
    for a, b in zip(codecs[4].encode(vectors), whole, strict=True):
        np.testing.assert_array_equal(a, b)
    half = codecs[4].encode(vectors.astype(np.float16))  # float16 input, widened block by block
    assert half[1].shape == whole[1].shape and (half[0] == whole[0]).mean() > 0.99


# -- determinism ------------------------------------------------------------------------------

def test_same_seed_same_codec_and_global_random_state_untouched(vectors):
    np.random.seed(123)
    torch.manual_seed(123)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    first = ResidualCodec.train(vectors, bits=2, n_centroids=32, seed=5)
    second = ResidualCodec.train(vectors, bits=2, n_centroids=32, seed=5)
    other = ResidualCodec.train(vectors, bits=2, n_centroids=32, seed=6)
    for name in ("centroids", "cutoffs", "weights"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.centroids, other.centroids)
    for a, b in zip(first.encode(vectors), second.encode(vectors), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


# -- sizes ------------------------------------------------------------------------------------

def test_sizes(codecs):
    for bits, codec in codecs.items():
        ids, residuals = codec.encode(clustered(n=5))
        assert ids.dtype == np.uint16 and residuals.shape == (5, DIM * bits // 8)
        assert codec.bytes_per_vector == 2 + DIM * bits // 8


@pytest.mark.parametrize(("n_centroids", "dtype"),
                         [(1 << 16, np.uint16), ((1 << 16) + 1, np.uint32)])
def test_code_width_follows_the_codebook(n_centroids, dtype):
    dim, rng = 8, np.random.default_rng(0)
    centroids = rng.standard_normal((n_centroids, dim)).astype(np.float32)
    codec = ResidualCodec(centroids, np.zeros((dim, 3)), np.zeros((dim, 4)), 2)
    ids, _ = codec.encode(centroids[-3:])
    assert codec.code_dtype == dtype and ids.dtype == dtype
    assert ids.tolist() == [n_centroids - 3, n_centroids - 2, n_centroids - 1]


def test_suggested_centroids_grow_with_the_collection():
    sizes = [1, 10, 1_000, 100_000, 355_000, 1_230_000, 50_000_000]
    counts = [suggested_centroids(n) for n in sizes]
    assert counts == sorted(counts) and all(1 <= c <= n for c, n in zip(counts, sizes, strict=True))
    for n, c in zip(sizes[2:], counts[2:], strict=True):
        assert c <= 16 * np.sqrt(n) < 2 * c and c & (c - 1) == 0  # a power of two


def test_training_defaults_to_the_suggested_size(vectors):
    codec = ResidualCodec.train(vectors[:400], bits=2, iterations=2)
    assert codec.n_centroids == suggested_centroids(400)


# -- persisted form ---------------------------------------------------------------------------

def test_saved_codec_reloads_identically(tmp_path, codecs, vectors):
    for bits, codec in codecs.items():
        codec.save(tmp_path, stem=f"codec-{bits}")
        params = json.loads((tmp_path / f"codec-{bits}.json").read_text())
        assert params["codec"] == "residual" and params["version"] == 1 and params["bits"] == bits
        with np.load(tmp_path / f"codec-{bits}.npz", allow_pickle=False) as archive:
            assert sorted(archive.files) == ["centroids", "cutoffs", "weights"]
        loaded = load_codec(tmp_path, stem=f"codec-{bits}")
        assert type(loaded) is ResidualCodec and loaded.bits == bits
        for name in ("centroids", "cutoffs", "weights"):
            original, again = getattr(codec, name), getattr(loaded, name)
            assert original.dtype == again.dtype
            np.testing.assert_array_equal(original, again)
        ids, residuals = codec.encode(vectors)
        np.testing.assert_array_equal(loaded.encode(vectors)[1], residuals)
        np.testing.assert_array_equal(loaded.decode(ids, residuals), codec.decode(ids, residuals))


def test_mismatched_or_damaged_files_are_corrupt(tmp_path, codecs):
    codecs[2].save(tmp_path, stem="a")
    codecs[4].save(tmp_path, stem="b")
    (tmp_path / "a.npz").write_bytes((tmp_path / "b.npz").read_bytes())  # halves of two saves
    with pytest.raises(IndexCorruptError, match="does not match"):
        ResidualCodec.load(tmp_path, stem="a")
    params = json.loads((tmp_path / "b.json").read_text())
    (tmp_path / "b.json").write_text(json.dumps({**params, "version": 99}))
    with pytest.raises(IndexCorruptError, match="version"):
        ResidualCodec.load(tmp_path, stem="b")
    (tmp_path / "b.json").write_text(json.dumps({**params, "codec": "zstd"}))
    with pytest.raises(IndexCorruptError, match="zstd"):
        load_codec(tmp_path, stem="b")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(IndexCorruptError):
        load_codec(tmp_path, stem="b")
    with pytest.raises(IndexCorruptError):
        load_codec(tmp_path, stem="missing")


def test_registry():
    assert codec_class("residual") is ResidualCodec and {"residual": ResidualCodec} == CODECS
    with pytest.raises(InvalidInputError, match="known: residual"):
        codec_class("float8")


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    np.zeros((0, DIM), np.float32),                          # empty
    np.ones((4, DIM + 1), np.float32),                       # wrong dimension
    np.ones(DIM, np.float32),                                # one vector, not a matrix
    np.ones((4, DIM), np.int64),                             # not floating point
    np.where(np.eye(4, DIM) > 0, np.nan, 1.0).astype(np.float32),   # NaN
    np.where(np.eye(4, DIM) > 0, np.inf, 1.0).astype(np.float16),   # infinity
    [["a"] * DIM],                                           # not numbers
])
def test_bad_vectors_raise_invalid_input(codecs, bad):
    with pytest.raises(InvalidInputError):
        codecs[2].encode(bad)
    if np.asarray(bad).ndim == 2 and np.asarray(bad).shape[1] == DIM + 1:
        return  # training has no dimension to check against
    with pytest.raises(InvalidInputError):
        ResidualCodec.train(bad, bits=2, n_centroids=1)


@pytest.mark.parametrize("kwargs", [{"bits": 3}, {"bits": 8}, {"n_centroids": 0},
                                    {"n_centroids": 10_000}, {"n_centroids": 2.5},
                                    {"iterations": 0}, {"sample_size": 3}])
def test_bad_training_settings_raise_invalid_input(vectors, kwargs):
    with pytest.raises(InvalidInputError):
        ResidualCodec.train(vectors[:500], **{"bits": 2, "n_centroids": 16, **kwargs})


def test_bad_codes_raise_invalid_input(codecs, vectors):
    codec = codecs[2]
    ids, residuals = codec.encode(vectors[:4])
    for bad_ids, bad_residuals in [
        (ids.astype(np.int64) + codec.n_centroids, residuals),  # no such centroid
        (ids.astype(np.int64) - 100, residuals),                 # negative
        (ids[:3], residuals),                                    # lengths differ
        (ids, residuals[:, :-1]),                                # too few bytes
        (ids, residuals.astype(np.int16)),                       # not bytes
        (ids.astype(np.float32), residuals),                     # not integers
    ]:
        with pytest.raises(InvalidInputError):
            codec.decode(bad_ids, bad_residuals)
    with pytest.raises(InvalidInputError):
        codec.decode(ids, residuals, dtype=np.int8)
