"""`gonprof report` on results scored by the v1 extractor, in the record format of that time."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.metrics.classifier import EXTRACTOR_NAME
from gonprof.records import load_records

runner = CliRunner()

# A compare results file as gonprof wrote it before issue 12: no class selection, no predicted-class
# counts, quality scored by gonprof-mnist-cnn-v1; the second row is older still and names no extractor.
OLD_RESULTS = {
    "gonprof": "0.1.0",
    "kind": "compare",
    "schema_version": 1,
    "records": [
        {"schema_version": 1, "kind": "floor", "status": "ok", "message": "", "mode": None, "arch": None,
         "generator": None, "preset": None, "batch_size": None, "seed": 0, "device": "cpu", "d_params": None,
         "g_params": None, "train_steps": None, "train_time_s": None, "time_budget_s": None, "profile": None,
         "quality": {"fid": 2.42, "kid_mean": -1.05, "kid_std": 0.0, "precision": 0.892, "recall": 0.905,
                     "density": 1.01, "coverage": 0.95, "class_coverage": 1.0, "class_entropy_nats": 2.3,
                     "mean_confidence": 0.99, "classifier_score": 9.7, "n_samples": 1000, "n_reference": 1000,
                     "extractor": "gonprof-mnist-cnn-v1", "weights_hash": "2255af189069", "seed": 0,
                     "kid_subsets": 100, "kid_subset_size": 1000},
         "samples_png": None, "run_dir": None, "wall_time_s": 3.5},
        {"schema_version": 1, "kind": "run", "status": "ok", "message": "", "mode": "lsgan",
         "arch": "lsgan-original", "batch_size": 64, "seed": 0, "device": "cpu", "d_params": 388865,
         "g_params": 1658657, "train_steps": 165, "train_time_s": 120.0, "profile": None,
         "quality": {"fid": 158.31, "kid_mean": 50.89, "kid_std": 0.0, "precision": 0.663, "recall": 0.297,
                     "density": 0.5, "coverage": 0.4, "class_coverage": 1.0, "class_entropy_nats": 2.2,
                     "mean_confidence": 0.93, "classifier_score": 8.1, "n_samples": 1000, "n_reference": 1000}},
    ],
}


def test_report_renders_an_old_v1_record_and_names_its_extractor(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(OLD_RESULTS))
    rows = load_records(path)
    assert [r.quality.extractor for r in rows] == ["gonprof-mnist-cnn-v1"] * 2  # the field's default is v1
    assert rows[0].quality.weights_hash == "2255af189069" and rows[1].quality.predicted_classes == {}
    res = runner.invoke(app, ["report", str(path)])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert "gonprof-mnist-cnn-v1 (weights 2255af189069)" in res.stdout
    assert EXTRACTOR_NAME not in res.stdout and EXTRACTOR_NAME != "gonprof-mnist-cnn-v1"
    assert "158.31" in res.stdout and "real (floor)" in res.stdout and "lsgan / lsgan-original" in res.stdout
