import json
import subprocess
import sys
import textwrap

from typer.testing import CliRunner

from gonprof.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_help_does_not_import_torch():
    code = "import sys; from gonprof.cli import app; app(['--help'], standalone_mode=False); " \
           "print('TORCH' if 'torch' in sys.modules else 'CLEAN')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("CLEAN")


def test_console_script_help_and_version():
    out = subprocess.run([sys.executable, "-m", "gonprof.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("gonprof ")


def test_list_json_is_valid_and_counts_are_measured():
    res = invoke("list", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["inception-k32"]["params"] == 216_705
    assert rows["gon-mnist-conv"]["params"] == 13_246_482
    assert all(r["matches_expected"] for r in rows.values())
    assert len([r for r in rows.values() if r["role"] == "discriminator"]) >= 11
    assert len([r for r in rows.values() if r["role"] == "generator"]) >= 4


def test_list_table_and_filters():
    res = invoke("list", "inception-*")
    assert res.exit_code == 0
    assert "inception-k8" in res.stdout and "gon-mnist-conv" not in res.stdout
    res = invoke("list", "--role", "generator", "--json")
    assert {r["role"] for r in json.loads(res.stdout)} == {"generator"}
    assert invoke("list", "--role", "critic").exit_code == 2


def test_unknown_arch_exits_2_with_did_you_mean():
    res = invoke("info", "--arch", "inceptoin-k32")
    assert res.exit_code == 2
    assert "inception-k32" in res.stderr and "Traceback" not in res.output


def test_info_totals(tmp_path):
    res = invoke("info", "--arch", "inception-k32", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["total_params"] == 216_705
    assert sum(r["params"] for r in report["layers"] if r["depth"] == 1) == 216_705
    res = invoke("info", "--arch", "inception-k32")
    assert "216,705" in res.stdout


def test_info_bad_shape_is_one_line():
    res = invoke("info", "--arch", "inception-k32", "--input-shape", "1,2")
    assert res.exit_code == 2 and "C,H,W" in res.stderr


PLUGIN = textwrap.dedent('''
    import torch.nn as nn
    from gonprof.arch import register_arch, Source

    @register_arch("tiny-plugin-disc", family="plugin", role="discriminator",
                   source=Source("a test plugin"), expected_params=785,
                   params_arithmetic="784*1 + 1 = 785")
    def tiny(input_shape=(1, 28, 28)):
        c, h, w = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 1))
''')


def test_file_plugin_adds_an_architecture(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    code = ("import sys; from gonprof.cli import app; "
            f"app(['list', 'tiny-*', '--json', '--plugin', {str(plugin)!r}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["tiny-plugin-disc"] and rows[0]["params"] == 785
    assert rows[0]["origin"].endswith("tiny")
