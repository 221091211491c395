"""Exit codes and outputs as documented: 143 on SIGTERM for every command that catches it, output paths tried by
creating them before any work, progress labels printed as text."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from gonprof import cli
from gonprof.cli import app


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    return lines[0]


# ----------------------------------------------------------------------------- SIGTERM: 143


def test_fit_stopped_by_sigterm_exits_143():
    """`gonprof fit` measures each trial in a worker process; SIGTERM stops them as Ctrl-C does and the
    command exits 143 (it exited 130), as `gonprof train` does."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "gonprof.cli", "fit", "--arch", "mlp-gan", "--memory", "4GiB"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stderr.readline()  # "fitting ...": the handler is set and the trials have begun
        assert first.startswith("fitting mlp-gan"), first
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted" in err and time.monotonic() - started < 60


@pytest.fixture
def sigterm_takes_the_ctrl_c_path():
    old = signal.signal(signal.SIGTERM, cli._stop_as_interrupt)
    yield
    signal.signal(signal.SIGTERM, old)


def test_a_command_stopped_by_sigterm_exits_143_and_by_ctrl_c_130(monkeypatch, sigterm_takes_the_ctrl_c_path):
    import gonprof.api

    def stopped(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(gonprof.api, "fit", stopped)
    res = invoke("fit", "--arch", "mlp-gan", "--memory", "4GiB")
    assert res.exit_code == 143 and _one_line(res) == "gonprof: error: interrupted"

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gonprof.api, "fit", ctrl_c)
    res = invoke("fit", "--arch", "mlp-gan", "--memory", "4GiB")
    assert res.exit_code == 130  # the SIGTERM of the command before is forgotten


def test_interrupted_exit_codes():
    cli._stopped_by.clear()
    assert cli.interrupted_exit_code() == 130
    with pytest.raises(KeyboardInterrupt):
        cli._stop_as_interrupt(signal.SIGTERM, None)
    assert cli.interrupted_exit_code() == 143
    with pytest.raises(KeyboardInterrupt):
        cli._stop_as_interrupt(signal.SIGHUP, None)
    assert cli.interrupted_exit_code() == 129
    cli._stopped_by.clear()


# ----------------------------------------------------------------------------- compare's progress labels


def test_compare_progress_labels_are_printed_as_text(monkeypatch, tmp_path):
    import gonprof.api

    def fake_compare(*args, events, **kwargs):
        events.on_start(0, 3, SimpleNamespace(kind="floor", cpus=(), label="real"))
        events.on_start(1, 3, SimpleNamespace(kind="run", cpus=(0, 1), label="gan / mlp-gan [bold]"))
        events.on_reuse(SimpleNamespace(label="lsgan / lsgan-original"))
        raise KeyboardInterrupt

    monkeypatch.setattr(gonprof.api, "compare", fake_compare)
    res = invoke("compare", "gan", "lsgan", "--steps", 1, "--out", tmp_path / "c")
    assert res.exit_code == 130, res.output
    assert "[floor] real images scored as samples ..." in res.output
    assert "[1/2] gan / mlp-gan [bold] on cores 0,1 ..." in res.output
    assert "[kept] lsgan / lsgan-original: finished earlier with the same settings" in res.output


# ----------------------------------------------------------------------------- outputs tried by creating them


@pytest.mark.parametrize("args", [
    ["profile", "--arch", "inception-k8", "--json", "/proc/x.json"],
    ["profile", "--arch", "inception-k8", "--csv", "/proc/x.csv"],
    ["compare", "gan", "--steps", 1, "--json", "/proc/x.json"],
    ["fit", "--arch", "inception-k8", "--memory", "64MiB", "--estimate", "--json", "/proc/x.json"],
    ["score", "x.png", "--json", "/proc/x.json"],
    ["report", "no-such-results.json", "--csv", "/proc/x.csv"],
])
def test_outputs_under_proc_are_refused_before_any_work(args):
    if not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    line = _one_line(res)
    assert "/proc/x." in line and "cannot be created" in line


def test_report_checks_its_csv_before_rendering(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me\n")
    res = invoke("report", tmp_path / "missing.json", "--csv", a_file / "x.csv")  # the csv is checked first
    assert res.exit_code == 2 and "is a file, not a folder" in _one_line(res)
    assert a_file.read_text() == "keep me\n"


def test_a_device_or_an_over_long_name_is_refused_in_one_line(tmp_path):
    res = invoke("profile", "--arch", "inception-k8", "--json", "/dev/null")
    assert res.exit_code == 2 and "is not a regular file" in _one_line(res)
    res = invoke("profile", "--arch", "inception-k8", "--json", tmp_path / ("a" * 300 + ".json"))
    assert res.exit_code == 2 and "File name too long" in _one_line(res)


def test_the_trial_file_is_removed_and_an_existing_one_kept(tmp_path):
    out = tmp_path / "new" / "r.json"
    res = invoke("profile", "--arch", "no-such-arch", "--json", out)  # checked (created, removed), then refused
    assert res.exit_code == 2 and not out.exists()
    kept = tmp_path / "kept.json"
    kept.write_text("old results\n")
    res = invoke("profile", "--arch", "no-such-arch", "--json", kept)
    assert res.exit_code == 2 and kept.read_text() == "old results\n"


# ----------------------------------------------------------------------------- name errors before progress


@pytest.mark.parametrize("args", [
    ("fit", "--arch", "inception-k3", "--memory", "1GiB"),
    ("fit", "--arch", "inception-k3", "--memory", "1GiB", "--estimate"),
    ("fit", "--arch", "inception-k8", "--mode", "lsgann", "--memory", "1GiB"),
    ("compare", "gon", "--arch", "inception-k3", "--steps", "1"),
    ("compare", "gonn", "--steps", "1"),
])
def test_a_misspelt_name_is_the_only_line_before_any_progress(tmp_path, args):
    """`fit --arch inception-k3` printed "fitting inception-k3 ..." before its did-you-mean; a name error is
    now the one line a command prints, in fit and in compare."""
    extra = ("--out", str(tmp_path / "c")) if args[0] == "compare" else ()
    res = invoke(*args, *extra)
    assert res.exit_code == 2, res.output
    line = _one_line(res)
    assert "did you mean" in line and not any(w in res.output for w in ("fitting", "comparing"))
    assert not (tmp_path / "c").exists()
