"""Feature caches: layout, content-hashed names, reuse, and never using a truncated file."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import REPO, sed_config, tiny_backbone_file, write_yaml
from tasks.sed import cache_features
from tasks.sed import cache

CATALOG = {"in_train": {"dataset": "digits", "split": "train", "augment": True, "epochs": 2},
           "in_val": {"dataset": "digits", "split": "val"},
           "C": {"dataset": "digits", "split": "val", "corruptions": ["contrast", "pixelate"], "severities": [5]}}


@pytest.fixture
def setup(tmp_path):
    backbone = tiny_backbone_file(tmp_path / "vit.pt")
    cfg = sed_config("cache_features", cache_dir=str(tmp_path / "cache"), catalog=CATALOG, batch_size=64,
                     device="cpu", **{"backbone/checkpoint": str(backbone)})
    return tmp_path, cfg


def run(tmp_path, cfg, capsys):
    cache_features.main(["--config", write_yaml(tmp_path / "cfg.yaml", cfg)])
    return capsys.readouterr().out


def files(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith(".hdf5"))


def test_layout_names_and_index(setup, capsys):
    tmp_path, cfg = setup
    run(tmp_path, cfg, capsys)
    folder = cfg["cache_dir"]
    names = files(folder)
    assert len(names) == 4
    for name in names:
        key, set_name = name[:-5].split("_", 1)
        assert len(key) == 20 and all(c in "0123456789abcdef" for c in key)
    index = cache.read_index(folder)
    assert sorted(index) == ["contrast_5", "in_train", "in_val", "pixelate_5"]
    assert index["pixelate_5"]["group"] == "C-5"
    with cache.open_cache(os.path.join(folder, index["in_train"]["file"])) as f:
        n = f.attrs["num_samples"]
        assert f["embed"].dtype == np.float32 and f["embed"].shape == (2 * n, 24)
        assert f["label"].shape == (2 * n, 1) and f["index"].shape == (2 * n, 1)
        idx = f["index"][:, 0]
        assert np.array_equal(idx[:n], idx[n:])                # pass after pass over the same samples
        assert not np.allclose(f["embed"][:n], f["embed"][n:])  # ... with fresh augmentations
        assert set(f["label"][:, 0]) == {0, 1, 2, 3, 4}
    assert [e["name"] for e in cache.resolve_sets(folder, "C-5")] == ["contrast_5", "pixelate_5"]
    with pytest.raises(KeyError, match="groups: C-5"):
        cache.resolve_sets(folder, "C-1")


def test_name_is_stable_and_follows_the_content(setup, capsys):
    tmp_path, cfg = setup
    run(tmp_path, cfg, capsys)
    first = files(cfg["cache_dir"])
    # the same key from a fresh interpreter (no dependence on hash seeds or dict order)
    code = ("import json,sys; from tasks.sed import cache; "
            "print(cache.cache_key('abc', json.loads(sys.argv[1]), {'input_size': [3, 16, 16]}))")
    keys = {subprocess.run([sys.executable, "-c", code, '{"b": 1, "a": [1, 2]}'], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.strip() for _ in range(2)}
    assert keys == {cache.cache_key("abc", {"a": [1, 2], "b": 1}, {"input_size": [3, 16, 16]})}
    # batch size does not change the features: same names
    run(tmp_path, dict(cfg, batch_size=17), capsys)
    assert files(cfg["cache_dir"]) == first
    # another backbone file (same config, other weights) gives new names
    tiny_backbone_file(cfg["backbone"]["checkpoint"], seed=1)
    run(tmp_path, cfg, capsys)
    assert len(set(files(cfg["cache_dir"])) - set(first)) == 4


def test_finished_cache_is_reused(setup, capsys):
    tmp_path, cfg = setup
    run(tmp_path, cfg, capsys)
    path = os.path.join(cfg["cache_dir"], cache.read_index(cfg["cache_dir"])["in_val"]["file"])
    stat = os.stat(path)
    out = run(tmp_path, cfg, capsys)
    assert out.count("reusing") == 4
    assert os.stat(path).st_mtime_ns == stat.st_mtime_ns and os.stat(path).st_ino == stat.st_ino


def test_truncated_cache_is_refused_and_rebuilt(setup, capsys):
    tmp_path, cfg = setup
    cfg["sets"] = ["in_val"]
    run(tmp_path, cfg, capsys)
    path = os.path.join(cfg["cache_dir"], cache.read_index(cfg["cache_dir"])["in_val"]["file"])
    with h5py.File(path) as f:
        expected = f["embed"][:]
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(cache.IncompleteCache):
        cache.open_cache(path)
    out = run(tmp_path, cfg, capsys)
    assert "rebuilding" in out and "reusing" not in out
    with cache.open_cache(path) as f:
        np.testing.assert_allclose(f["embed"][:], expected, rtol=1e-5, atol=1e-6)


def test_unfinished_file_is_never_read(tmp_path):
    path = str(tmp_path / "x.hdf5")
    w = cache.CacheWriter(path, "k", n_total=10, dim=3)
    w.write(np.ones((4, 3), np.float32), np.zeros(4), np.arange(4))
    w.close()
    assert not os.path.exists(path)                      # still under its .partial name
    os.rename(path + ".partial", path)                   # even if someone renames it
    with pytest.raises(cache.IncompleteCache, match="not finished"):
        cache.open_cache(path)


def test_interrupted_cache_resumes(setup, capsys):
    tmp_path, cfg = setup
    cfg["sets"] = ["in_val"]
    run(tmp_path, cfg, capsys)
    entry = cache.read_index(cfg["cache_dir"])["in_val"]
    path = os.path.join(cfg["cache_dir"], entry["file"])
    with h5py.File(path) as f:
        expected = f["embed"][:]
        attrs = dict(f.attrs)
    # make it look interrupted after 100 rows: a .partial with the counter at 100
    os.remove(path)
    w = cache.CacheWriter(path, entry["key"], n_total=int(attrs["n_total"]), dim=expected.shape[1],
                          attrs={k: v for k, v in attrs.items() if k not in ("key", "n_total", "n_written", "complete")})
    w.write(expected[:100], np.zeros(100), np.zeros(100))
    w.close()
    out = run(tmp_path, cfg, capsys)
    assert "resuming at row 100" in out
    with cache.open_cache(path) as f:
        np.testing.assert_allclose(f["embed"][:], expected, rtol=1e-5, atol=1e-6)
