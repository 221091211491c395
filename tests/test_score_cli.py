"""`gonprof score`: each input format, each error, and the issue's done-when scenario."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision.utils as vutils
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.metrics import corruptions as C
from gonprof.metrics.classifier import EXTRACTOR_NAME, reference_split, weights_hash

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def score(*args):
    return runner.invoke(app, ["score", *map(str, args)])


def _ok(res):
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return res


def _error(res, code: int, text: str):
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gonprof: error:"), res.stderr
    assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def held():
    return reference_split()[1]


@pytest.fixture(scope="module")
def zeros(held):
    return held.images[held.labels == 0][:64]


def _grid(x, path, **kw):
    vutils.save_image((x + 1) / 2, str(path), nrow=8, **kw)
    return path


def _json(path):
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- done when (issue 12)


def test_done_when_speckled_zeros_read_as_zeros_clean_beats_noisy_and_noise_is_not_confident(tmp_path, zeros):
    noisy = _grid(C.salt_and_pepper(zeros, 0.10, seed=1), tmp_path / "zeros-sp10.png")
    clean = _grid(zeros, tmp_path / "zeros.png")
    noise = _grid(C.uniform_noise(64, seed=2), tmp_path / "noise.png")
    for path in (noisy, clean, noise):
        _ok(score(path, "--classes", "0", "--json", path.with_suffix(".json")))
    q_noisy, q_clean, q_noise = (_json(p.with_suffix(".json"))["quality"] for p in (noisy, clean, noise))
    assert q_noisy["n_samples"] == 64 and q_noisy["classes"] == [0]
    assert q_noisy["predicted_classes"].get("0", 0) >= 0.9 * 64, q_noisy["predicted_classes"]
    assert q_noisy["on_class_fraction"] >= 0.9
    assert q_clean["fid"] < q_noisy["fid"]
    assert q_noise["mean_confidence"] < 0.5 < 0.95 < q_clean["mean_confidence"]
    assert q_noise["fid"] > 10 * q_noisy["fid"]
    for q in (q_noisy, q_clean, q_noise):
        assert q["extractor"] == EXTRACTOR_NAME and q["weights_hash"] == weights_hash()


# ----------------------------------------------------------------------------- each input format


def test_png_grid_table_json_and_report(tmp_path, held):
    path = _grid(held.images[:40], tmp_path / "mixed.png")
    res = _ok(score(path, "--json", tmp_path / "out.json", "--threads", "1"))
    out = res.stdout
    assert "gonprof score" in out and "real (floor)" in out and "score / mixed.png" in out
    assert "png-grid (5 x 8 tiles, padding 2), values read as [0, 255]" in out
    assert EXTRACTOR_NAME in out and weights_hash() in out
    data = _json(tmp_path / "out.json")
    assert data["kind"] == "compare" and [r["kind"] for r in data["records"]] == ["floor", "run"]
    assert data["samples"] == {"source": str(path), "format": "png-grid", "value_range": "[0, 255]",
                               "layout": "5 x 8 tiles, padding 2", "n_images": 40}
    q, floor = data["quality"], data["floor"]
    assert q == data["records"][1]["quality"] and floor == data["records"][0]["quality"]
    assert q["n_samples"] == floor["n_samples"] == 40 and q["classes"] is None
    assert sum(q["predicted_classes"].values()) == 40
    rep = runner.invoke(app, ["report", str(tmp_path / "out.json")])
    assert rep.exit_code == 0, rep.stderr
    assert "score / mixed.png" in rep.stdout and EXTRACTOR_NAME in rep.stdout


def test_folder_pt_and_npy_inputs(tmp_path, held):
    x = held.images[held.labels == 3][:12]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(x):
        vutils.save_image((img + 1) / 2, str(folder / f"{i:03d}.png"))
    torch.save(x, tmp_path / "s.pt")
    np.save(tmp_path / "s.npy", ((x[:, 0] + 1) / 2).numpy())
    fids, preds = {}, {}
    for path, fmt, rng in ((folder, "png-folder", "[0, 255]"), (tmp_path / "s.pt", "torch", "[-1, 1]"),
                           (tmp_path / "s.npy", "numpy", "[0, 1]")):
        out = tmp_path / f"{path.name}.json"
        res = _ok(score(path, "--classes", "3", "--samples", "10", "--seed", "1", "--json", out))
        assert f"values read as {rng}" in res.stdout
        assert "scoring 10 of the 12 images" in res.stderr
        data = _json(out)
        assert (data["samples"]["format"], data["samples"]["value_range"]) == (fmt, rng)
        q = data["quality"]
        assert q["n_samples"] == 10 and q["classes"] == [3] and q["predicted_classes"].get("3", 0) >= 9
        fids[fmt], preds[fmt] = q["fid"], q["predicted_classes"]
    # The same images, read three ways, score alike (PNG rounds to 8 bits).
    assert fids["torch"] == pytest.approx(fids["numpy"], rel=1e-4)
    assert fids["png-folder"] == pytest.approx(fids["torch"], rel=0.05)
    assert preds["torch"] == preds["numpy"] == preds["png-folder"]


# ----------------------------------------------------------------------------- each error: one line, exit 1 or 2


def test_unreadable_corrupt_and_wrong_shape_files_exit_1(tmp_path):
    _error(score(tmp_path / "missing.png"), 1, "missing.png: not found")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    _error(score(tmp_path / "junk.png"), 1, "cannot read as a PNG image")
    (tmp_path / "junk.pt").write_bytes(b"not a tensor")
    _error(score(tmp_path / "junk.pt"), 1, "cannot read as a torch tensor file")
    np.save(tmp_path / "rgb.npy", np.zeros((10, 3, 28, 28), dtype=np.float32))
    _error(score(tmp_path / "rgb.npy"), 1, "shape (10, 3, 28, 28); expected N x 1 x 28 x 28")
    np.save(tmp_path / "range.npy", np.full((10, 28, 28), 7.0))
    _error(score(tmp_path / "range.npy"), 1, "expected images in [-1, 1] or [0, 1]")
    (tmp_path / "notes.txt").write_text("x")
    _error(score(tmp_path / "notes.txt"), 1, "unsupported file type")
    torch.save(torch.zeros(5, 1, 28, 28), tmp_path / "five.pt")
    _error(score(tmp_path / "five.pt"), 1, "5 images; scoring needs at least 6")


def test_usage_errors_exit_2(tmp_path, zeros):
    path = tmp_path / "z.pt"
    torch.save(zeros, path)
    _error(score(path, "--classes", "zero"), 2, "--classes takes labels separated by commas")
    _error(score(path, "--classes", "12"), 2, "no image of class 12")
    _error(score(path, "--classes", "0,0"), 2, "names a class twice")
    _error(score(path, "--samples", "100"), 2, "--samples 100 but")
    _error(score(path, "--samples", "3"), 2, "scoring needs at least 6")
    big = tmp_path / "big.pt"
    torch.save(torch.cat([zeros] * 5), big)  # 320 images; ~500 held-out zeros allow a floor up to ~250
    line = _error(score(big, "--classes", "0", "--samples", "300"), 2, "a floor at N=300 needs 600 held-out")
    assert "use --samples" in line
    res = _ok(score(big, "--classes", "0"))  # without --samples: the largest N with a floor
    assert "a floor at N needs 2N held-out real images" in res.stderr
