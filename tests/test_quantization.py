import itertools
import json
import re

import numpy as np
import pytest

from rq_keras.quantizer.codebook_json import FORMAT_VERSION, centroids_digest
from rq_keras.quantizer.residual import ResidualQuantizer
from rq_keras.quantizer.tokens import decision_boundaries


def lognormal(n, seed=0, zero_share=0.0):
    rng = np.random.default_rng(seed)
    y = rng.lognormal(2.0, 1.2, n)
    if zero_share:
        y[rng.random(n) < zero_share] = 0.0
    return y


# ----------------------------------------------------------------- golden values


def test_golden_two_clusters():
    q = ResidualQuantizer(num_levels=1, codebook_size=2).fit([0.0, 1.0, 10.0, 11.0])
    np.testing.assert_array_equal(q.centroids[0], [0.5, 10.5])
    np.testing.assert_array_equal(q.encode([0.0, 1.0, 10.0, 11.0])[:, 0], [0, 0, 1, 1])
    np.testing.assert_array_equal(q.boundaries[0], [5.5])


def test_golden_two_levels_reconstruct_exactly():
    y = [0.0, 1.0, 10.0, 11.0]
    q = ResidualQuantizer(num_levels=2, codebook_size=2).fit(y)
    np.testing.assert_array_equal(q.centroids[0], [0.5, 10.5])
    np.testing.assert_array_equal(q.centroids[1], [-0.5, 0.5])
    codes = q.encode(y)
    np.testing.assert_array_equal(codes, [[0, 0], [0, 1], [1, 0], [1, 1]])
    expected = [[0.5, -0.5], [0.5, 0.5], [10.5, -0.5], [10.5, 0.5]]
    np.testing.assert_array_equal(q.quantized(y), expected)
    np.testing.assert_array_equal(q.decode(codes), y)


def test_golden_negative_values():
    q = ResidualQuantizer(num_levels=1, codebook_size=2).fit([-5.0, -4.0, 4.0, 5.0])
    np.testing.assert_array_equal(q.centroids[0], [-4.5, 4.5])


def test_golden_sample_weight():
    q = ResidualQuantizer(num_levels=1, codebook_size=1).fit([0.0, 10.0], sample_weight=[3, 1])
    np.testing.assert_array_equal(q.centroids[0], [2.5])
    # Zero weights take no part in the fit but still encode.
    q = ResidualQuantizer(num_levels=1, codebook_size=1).fit([0.0, 8.0, 100.0], [1, 1, 0])
    np.testing.assert_array_equal(q.centroids[0], [4.0])
    np.testing.assert_array_equal(q.encode([100.0]), [[0]])


def test_golden_weights_equal_repetition():
    y = lognormal(300, seed=3)
    counts = np.random.default_rng(4).integers(1, 4, y.size)
    a = ResidualQuantizer(num_levels=2, codebook_size=5).fit(y, sample_weight=counts)
    b = ResidualQuantizer(num_levels=2, codebook_size=5).fit(np.repeat(y, counts))
    for ca, cb in zip(a.centroids, b.centroids):
        np.testing.assert_allclose(ca, cb, rtol=1e-12, atol=1e-12)


def test_golden_kmedians():
    # Best 2-split under absolute error: {0,1,2,10,11} (median 2, cost 20) and {30}.
    y = [0.0, 1.0, 2.0, 10.0, 11.0, 30.0]
    q = ResidualQuantizer(num_levels=1, codebook_size=2, method="kmedians").fit(y)
    np.testing.assert_array_equal(q.centroids[0], [2.0, 30.0])
    assert q.fit_info["levels"][0]["cost"] == pytest.approx(20.0)
    # The same data under squared error: {0,1,2,10,11} (mean 4.8) and {30}.
    q = ResidualQuantizer(num_levels=1, codebook_size=2, method="kmeans").fit(y)
    np.testing.assert_allclose(q.centroids[0], [4.8, 30.0])
    assert q.fit_info["levels"][0]["cost"] == pytest.approx(110.8)


def test_method_per_level():
    y = lognormal(2000, seed=5)
    q = ResidualQuantizer(num_levels=2, codebook_size=8, method=["kmedians", "kmeans"]).fit(y)
    assert [e["method"] for e in q.fit_info["levels"]] == ["kmedians", "kmeans"]
    # Level-1 k-median centroids are data values.
    assert np.isin(q.centroids[0], y).all()


def test_dynamic_quantile_bins_hold_equal_counts():
    """method="quantile" (Table 5's dynamic quantile): equal-count bins, each
    centroid its bin's mean, no Lloyd iterations."""
    y = np.arange(100.0)
    q = ResidualQuantizer(num_levels=1, codebook_size=4, method="quantile").fit(y)
    np.testing.assert_allclose(q.centroids[0], [12.0, 37.0, 62.0, 87.0])  # 25 values each
    np.testing.assert_array_equal(np.bincount(q.encode(y)[:, 0]), [25, 25, 25, 25])
    assert q.fit_info["levels"][0]["lloyd_iterations"] == 0
    # Weights count as repetitions.
    w = ResidualQuantizer(num_levels=1, codebook_size=2, method="quantile")
    w.fit([1.0, 2.0, 3.0], sample_weight=[2.0, 1.0, 1.0])
    np.testing.assert_allclose(w.centroids[0], [1.0, 2.5])


def test_dynamic_quantile_rebalances_after_a_heavy_tie():
    """70% zeros take one bin; the other bins share the rest equally (static
    quantile cuts would leave most bins inside the zeros)."""
    y = np.concatenate([np.zeros(700), np.arange(1.0, 301.0)])
    q = ResidualQuantizer(num_levels=1, codebook_size=4, method="quantile").fit(y)
    np.testing.assert_allclose(q.centroids[0], [0.0, 50.5, 150.5, 250.5])
    # Codes follow the codebook's one decision rule, the nearest centroid: the
    # values 1..25 are nearer 0 than 50.5 (a bin's edge values may change bin).
    counts = np.bincount(q.encode(y)[:, 0])
    np.testing.assert_array_equal(counts, [725, 75, 100, 100])
    # Residual levels, the codebook file and the in-graph encoder work as for K-means.
    deep = ResidualQuantizer(num_levels=2, codebook_size=8, method="quantile").fit(y)
    assert np.abs(deep.decode(deep.encode(y)) - y).mean() < np.abs(q.decode(q.encode(y)) - y).mean()


def test_quantile_codebook_round_trip(tmp_path):
    y = lognormal(3000, seed=21)
    q = ResidualQuantizer(num_levels=3, codebook_size=16, method="quantile").fit(y)
    q.save(tmp_path / "q.json")
    loaded = ResidualQuantizer.load(tmp_path / "q.json")
    assert loaded.method == ["quantile"] * 3
    np.testing.assert_array_equal(loaded.encode(y), q.encode(y))


def test_exact_midpoint_goes_to_lower_centroid():
    q = ResidualQuantizer(num_levels=1, codebook_size=2).fit([0.0, 1.0, 10.0, 11.0])
    np.testing.assert_array_equal(q.encode([5.5, np.nextafter(5.5, 6.0)])[:, 0], [0, 1])


def brute_force_cost(values, k):
    """Minimum SSE over every split of the sorted distinct values into k runs."""
    xs = np.sort(values)
    best = np.inf
    for cuts in itertools.combinations(range(1, xs.size), k - 1):
        runs = np.split(xs, cuts)
        best = min(best, sum(float(((r - r.mean()) ** 2).sum()) for r in runs))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_optimal_init_is_globally_optimal_on_small_data(seed):
    y = np.random.default_rng(seed).lognormal(0, 1, 11)
    q = ResidualQuantizer(num_levels=1, codebook_size=3).fit(y)
    assert q.fit_info["levels"][0]["cost"] == pytest.approx(brute_force_cost(y, 3), rel=1e-9)


def test_beats_or_matches_kmeanspp_starts():
    y = lognormal(5000, seed=7, zero_share=0.3)
    best = ResidualQuantizer(num_levels=1, codebook_size=16).fit(y).fit_info["levels"][0]["cost"]
    for seed in range(5):
        other = ResidualQuantizer(num_levels=1, codebook_size=16, init="kmeans++", seed=seed)
        assert best <= other.fit(y).fit_info["levels"][0]["cost"] * (1 + 1e-9)


def test_kmeanspp_is_seeded():
    y = lognormal(3000, seed=8)
    a = ResidualQuantizer(init="kmeans++", seed=1, codebook_size=8).fit(y)
    b = ResidualQuantizer(init="kmeans++", seed=1, codebook_size=8).fit(y)
    for ca, cb in zip(a.centroids, b.centroids):
        np.testing.assert_array_equal(ca, cb)


def test_large_continuous_data_uses_candidate_grid_and_refines():
    y = lognormal(50_000, seed=9, zero_share=0.4)
    q = ResidualQuantizer(num_levels=3, codebook_size=48).fit(y)
    for c in q.centroids:
        assert c.size == 48 and np.all(np.diff(c) > 0)
    rep = q.report(y)
    assert [e["codes_used"] for e in rep["levels"]] == [48, 48, 48]
    # A grid four times finer finds no noticeably better level-1 codebook.
    fine = ResidualQuantizer(num_levels=1, codebook_size=48, num_candidates=4096).fit(y)
    cost = q.fit_info["levels"][0]["cost"]
    assert cost <= fine.fit_info["levels"][0]["cost"] * 1.005


# ----------------------------------------------------------------- properties


def test_error_does_not_grow_with_levels():
    y = lognormal(20_000, seed=10, zero_share=0.2)
    costs, maes = [], []
    for levels in (1, 2, 3, 4):
        q = ResidualQuantizer(num_levels=levels, codebook_size=16).fit(y)
        costs.append(q.fit_info["levels"][-1]["cost"])
        maes.append(q.report(y)["reconstruction_mae"])
    assert all(b <= a for a, b in zip(costs, costs[1:])), costs
    assert all(b <= a for a, b in zip(maes, maes[1:])), maes
    assert maes[-1] < maes[0] / 50


def test_error_shrinks_with_codebook_size():
    y = lognormal(20_000, seed=11)
    maes = [
        ResidualQuantizer(num_levels=2, codebook_size=k).fit(y).report(y)["reconstruction_mae"]
        for k in (4, 8, 16, 32, 64)
    ]
    assert all(b < a for a, b in zip(maes, maes[1:])), maes


def test_fit_matches_encode_partition():
    """The residuals each level was fitted on are the ones encode produces."""
    y = lognormal(10_000, seed=12)
    q = ResidualQuantizer(num_levels=3, codebook_size=12).fit(y)
    values = q.quantized(y)
    residual = y.copy()
    for level, c in enumerate(q.centroids):
        members = [residual[q.encode(y)[:, level] == k] for k in range(c.size)]
        # Each k-means centroid is the mean of the residuals it encodes.
        np.testing.assert_allclose(c, [m.mean() for m in members], rtol=1e-9, atol=1e-9)
        residual = residual - values[:, level]


# ----------------------------------------------------------------- vocabulary


def test_vocabulary_layout():
    q = ResidualQuantizer(num_levels=3, codebook_size=[4, 3, 2]).fit(lognormal(500, seed=13))
    assert q.fitted_codebook_sizes == [4, 3, 2]
    assert q.vocabulary_size == 1 + 4 + 3 + 2
    np.testing.assert_array_equal(q.token_offsets, [1, 5, 8])
    assert q.token_id(0, 0) == 1 and q.token_id(1, 0) == 5 and q.token_id(2, 1) == 9
    for token in range(1, q.vocabulary_size):
        assert q.token_id(*q.level_and_code(token)) == token
    codes = q.encode(lognormal(50, seed=14))
    tokens = q.codes_to_tokens(codes)
    assert tokens.min() >= 1 and tokens.max() < q.vocabulary_size
    np.testing.assert_array_equal(q.tokens_to_codes(tokens), codes)
    with pytest.raises(ValueError, match="0 is <start>"):
        q.level_and_code(0)
    with pytest.raises(ValueError, match="`code` must be in"):
        q.token_id(2, 2)
    with pytest.raises(ValueError, match="out of range"):
        q.tokens_to_codes([[1, 1, 8]])  # level 1 token where level 2 is expected


# ----------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path):
    y = lognormal(5000, seed=15)
    q = ResidualQuantizer(num_levels=3, codebook_size=[8, 6, 4], clip_max=200.0).fit(y)
    path = tmp_path / "codebook.json"
    q.save(path)
    loaded = ResidualQuantizer.load(path)
    assert loaded.get_config() == q.get_config()
    for a, b in zip(loaded.centroids, q.centroids):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.encode(y), q.encode(y))
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    # The std of the clipped labels, L_reg's unit with label_scale="std".
    assert loaded.label_std == q.label_std == pytest.approx(np.minimum(y, 200.0).std(), rel=1e-9)


def test_label_std_is_weighted_and_never_zero(tmp_path):
    y = np.array([1.0, 2.0, 10.0])
    weighted = ResidualQuantizer(num_levels=1, codebook_size=2).fit(y, [1.0, 1.0, 2.0])
    assert weighted.label_std == pytest.approx(np.std([1.0, 2.0, 10.0, 10.0]), rel=1e-12)
    with pytest.warns(UserWarning):
        constant = ResidualQuantizer(num_levels=1, codebook_size=2).fit(np.full(5, 3.0))
    assert constant.label_std == 1.0  # no spread: the label's own unit
    # A codebook saved before the field: asked for, it says so.
    path = tmp_path / "old.json"
    weighted.fit_info.pop("label_std")
    weighted.save(path)
    with pytest.raises(ValueError, match="no label_std .* fit it again"):
        _ = ResidualQuantizer.load(path).label_std


def _saved(tmp_path):
    q = ResidualQuantizer(num_levels=2, codebook_size=4).fit(lognormal(500, seed=16))
    path = tmp_path / "cb.json"
    q.save(path)
    return path, json.loads(path.read_text())


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_load_rejects_truncated_file(tmp_path):
    path, _ = _saved(tmp_path)
    path.write_text(path.read_text()[:100])
    with pytest.raises(ValueError, match=r"cb\.json: not a valid JSON codebook"):
        ResidualQuantizer.load(path)


def test_load_rejects_binary_file(tmp_path):
    path = tmp_path / "cb.json"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="not a valid JSON codebook"):
        ResidualQuantizer.load(path)


def test_load_rejects_other_json(tmp_path):
    path = _write(tmp_path / "other.json", {"hello": 1})
    with pytest.raises(ValueError, match=r"other\.json: not an rq_keras codebook"):
        ResidualQuantizer.load(path)


def test_load_rejects_unknown_version(tmp_path):
    path, doc = _saved(tmp_path)
    doc["format_version"] = 99
    with pytest.raises(ValueError, match="unsupported codebook format_version 99"):
        ResidualQuantizer.load(_write(path, doc))


def test_load_rejects_tampered_centroids(tmp_path):
    path, doc = _saved(tmp_path)
    doc["centroids"][1][0] += 1e-9
    with pytest.raises(ValueError, match="corrupted"):
        ResidualQuantizer.load(_write(path, doc))


def test_load_rejects_unsorted_centroids(tmp_path):
    path, doc = _saved(tmp_path)
    doc["centroids"][0] = doc["centroids"][0][::-1]
    doc["centroids_sha256"] = centroids_digest(doc["centroids"])
    with pytest.raises(ValueError, match="level 0: centroids must be strictly increasing"):
        ResidualQuantizer.load(_write(path, doc))


def test_load_rejects_missing_field_and_bad_config(tmp_path):
    path, doc = _saved(tmp_path)
    del doc["centroids"]
    with pytest.raises(ValueError, match="missing the field 'centroids'"):
        ResidualQuantizer.load(_write(path, doc))
    path, doc = _saved(tmp_path)
    doc["config"]["num_levels"] = 0
    with pytest.raises(ValueError, match="`num_levels` must be >= 1, got 0"):
        ResidualQuantizer.load(_write(path, doc))
    path, doc = _saved(tmp_path)
    doc["config"]["num_levels"] = 3
    doc["config"]["codebook_size"] = [4, 4, 4]
    doc["config"]["method"] = ["kmeans"] * 3
    with pytest.raises(ValueError, match="list of 3 levels"):
        ResidualQuantizer.load(_write(path, doc))


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        ResidualQuantizer.load(tmp_path / "nope.json")


# ----------------------------------------------------------------- bad input


def test_nan_labels_named_with_rows():
    y = np.arange(20, dtype=float)
    y[[3, 7, 8, 9, 10, 11, 12]] = np.nan
    with pytest.raises(ValueError, match=r"NaN values: 7 row\(s\).*\[3, 7, 8, 9, 10, \.\.\.\]"):
        ResidualQuantizer().fit(y)


def test_infinite_labels_named_with_rows():
    y = np.ones(10)
    y[4] = np.inf
    y[6] = -np.inf
    with pytest.raises(ValueError, match=r"infinite values: 2 row\(s\).*\[4, 6\]"):
        ResidualQuantizer().fit(y)


def test_empty_labels():
    with pytest.raises(ValueError, match="`y` is empty"):
        ResidualQuantizer().fit([])


def test_non_numeric_labels():
    with pytest.raises(ValueError, match=r"non-numeric values: 2 row\(s\).*\[1, 3\].*'abc'"):
        ResidualQuantizer().fit(np.array(["1.5", "abc", "2", None], dtype=object))


def test_numeric_strings_are_accepted():
    q = ResidualQuantizer(num_levels=1, codebook_size=2).fit(np.array(["0", "1", "10", "11"]))
    np.testing.assert_array_equal(q.centroids[0], [0.5, 10.5])


def test_wrong_shape_labels():
    with pytest.raises(ValueError, match=r"must be 1-D"):
        ResidualQuantizer().fit(np.ones((4, 2)))


def test_fewer_distinct_values_than_codebook_size():
    y = [1.0, 1.0, 2.0, 2.0, 3.0]
    with pytest.warns(UserWarning) as record:
        q = ResidualQuantizer(num_levels=2, codebook_size=5).fit(y)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert messages[0].startswith("level 0: residuals have 3 distinct value(s)")
    assert messages[1].startswith("level 1: residuals have 1 distinct value(s)")
    np.testing.assert_array_equal(q.centroids[0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(q.centroids[1], [0.0])  # level 1 is exact
    assert q.fitted_codebook_sizes == [3, 1]
    assert q.vocabulary_size == 5
    np.testing.assert_array_equal(q.decode(q.encode(y)), y)


def test_constant_labels():
    with pytest.warns(UserWarning):
        q = ResidualQuantizer(num_levels=3, codebook_size=4).fit(np.full(100, 7.0))
    assert q.fitted_codebook_sizes == [1, 1, 1]
    np.testing.assert_array_equal(q.decode(q.encode([7.0, 100.0])), [7.0, 7.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_levels": 0}, r"`num_levels` must be >= 1, got 0"),
        ({"num_levels": 2.5}, r"`num_levels` must be an int"),
        ({"codebook_size": 0}, r"`codebook_size` must be an int >= 1"),
        ({"codebook_size": [4, 4]}, r"`codebook_size` has 2 entries but `num_levels` is 3"),
        ({"method": "kmodes"}, r"`method` must be one of"),
        ({"clip_min": 5.0, "clip_max": 1.0}, r"`clip_min` \(5.0\) must be <= `clip_max`"),
        ({"clip_max": float("nan")}, r"`clip_max` must be a finite number"),
        ({"init": "random"}, r"`init` must be one of"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ResidualQuantizer(**kwargs)


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1.0, -1.0, 1.0], r"finite and >= 0: 1 row\(s\).*\[1\]"),
        ([1.0, np.nan, 1.0], r"finite and >= 0"),
        ([0.0, 0.0, 0.0], r"sums to 0"),
        ([1.0, 1.0], r"must have shape \(3,\)"),
    ],
)
def test_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        ResidualQuantizer(num_levels=1, codebook_size=2).fit([1.0, 2.0, 3.0], weights)


def test_unfitted_use():
    with pytest.raises(RuntimeError, match="not fitted"):
        ResidualQuantizer().encode([1.0])


def test_decode_rejects_bad_codes():
    q = ResidualQuantizer(num_levels=2, codebook_size=3).fit(lognormal(100, seed=17))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        q.decode([[0, 0, 0]])
    with pytest.raises(ValueError, match=r"out of range: 1 row\(s\).*\[1\]"):
        q.decode([[0, 0], [3, 0]])
    with pytest.raises(ValueError, match="must be integers"):
        q.decode([[0.5, 0.0]])


def test_clipping():
    y = np.array([0.0, 1.0, 2.0, 3.0, 1000.0])
    q = ResidualQuantizer(num_levels=1, codebook_size=4, clip_max=3.0).fit(y)
    np.testing.assert_array_equal(q.centroids[0], [0.0, 1.0, 2.0, 3.0])
    rep = q.report(y)
    assert rep["clipped_rows"] == 1
    assert rep["max_abs_error"] == pytest.approx(997.0)


# ----------------------------------------------------------------- real data


def test_cdnow_transaction_values(cdnow_values):
    q = ResidualQuantizer(num_levels=3, codebook_size=48).fit(cdnow_values)
    rep = q.report(cdnow_values)
    maes = [e["mae"] for e in rep["levels"]]
    assert maes[0] > 10 * maes[1] > 100 * maes[2]
    assert rep["reconstruction_mae"] < 0.01  # dollars; values reach $1,286
    assert all(e["codes_used"] == 48 for e in rep["levels"])
    assert rep["n"] == 69_659


def test_plot_writes_png(tmp_path, cdnow_values):
    q = ResidualQuantizer(num_levels=2, codebook_size=8).fit(cdnow_values)
    path = tmp_path / "plot.png"
    q.plot(cdnow_values, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decision_boundaries_are_midpoints():
    np.testing.assert_array_equal(decision_boundaries([0.0, 2.0, 10.0]), [1.0, 6.0])


@pytest.mark.parametrize(
    "y",
    [
        [1e300, 2e300, 3e300, 5e300, -1e300],  # the squares overflow float64
        [1e160, 3e160, 7e160, 1.0],
        [-1.7e308, -1.6e308, 1.6e308, 1.7e308],  # even the midpoints overflow
    ],
)
def test_labels_near_the_float_limits_are_refused(tmp_path, y):
    q = ResidualQuantizer(num_levels=2, codebook_size=2)
    lo, hi = min(y), max(y)
    label_range = re.escape(f"labels in [{lo!r}, {hi!r}]")
    with pytest.raises(ValueError, match=rf"{label_range} are too large to fit.*clip_min"):
        q.fit(y)
    assert q.centroids is None
    with pytest.raises(RuntimeError, match="not fitted"):
        q.save(tmp_path / "cb.json")
    assert list(tmp_path.iterdir()) == []


def test_save_never_writes_non_finite_centroids(tmp_path):
    q = ResidualQuantizer(num_levels=2, codebook_size=4).fit(lognormal(500, seed=17))
    path = tmp_path / "cb.json"
    q.save(path)
    before = path.read_text()
    q.centroids[1] = np.array([-1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match=r"level 1: centroids must be finite"):
        q.save(path)
    q.centroids[1] = np.array([-1.0, np.inf])
    with pytest.raises(ValueError, match=r"level 1: centroids must be finite"):
        q.save(tmp_path / "new.json")
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cb.json"]
