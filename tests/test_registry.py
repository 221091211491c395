import pytest

from gonprof.registry import DuplicateNameError, PluginError, Registry, UnknownNameError, load_plugin_file, natural_key


def make():
    reg = Registry("thing", "gonprof.tests.none")
    for name in ["inception-k32", "inception-k8", "inception-k16", "lsgan-original", "gon-mnist-conv"]:
        reg.add(name, name.upper(), origin=f"test:{name}")
    return reg


def test_natural_sort_orders_numbers_by_value():
    assert sorted(["k32", "k8", "k16"], key=natural_key) == ["k8", "k16", "k32"]
    assert make().list("inception-*") == ["inception-k8", "inception-k16", "inception-k32"]


def test_plain_word_matches_substring_and_glob_matches_whole_name():
    reg = make()
    assert reg.list("mnist") == ["gon-mnist-conv"]
    assert reg.list("mnist*") == []
    assert reg.list() == ["gon-mnist-conv", "inception-k8", "inception-k16", "inception-k32", "lsgan-original"]


def test_get_and_did_you_mean():
    reg = make()
    assert reg.get("lsgan-original") == "LSGAN-ORIGINAL"
    with pytest.raises(UnknownNameError) as info:
        reg.get("inceptoin-k32")
    assert "inception-k32" in info.value.suggestions
    assert "did you mean inception-k32 or" in str(info.value)  # the closest name first
    assert "\n" not in str(info.value)


def test_duplicate_names_both_sources():
    reg = make()
    with pytest.raises(DuplicateNameError) as info:
        reg.add("inception-k8", "other", origin="plugin.py")
    msg = str(info.value)
    assert "test:inception-k8" in msg and "plugin.py" in msg


def test_decorator_returns_object_and_registers():
    reg = Registry("thing", "gonprof.tests.none")

    @reg.register("f", make=lambda fn: ("spec", fn))
    def f():
        return 1

    assert f() == 1 and reg.get("f") == ("spec", f)


def test_match_expands_globs_and_rejects_unknown():
    reg = make()
    assert reg.match(["lsgan-original", "inception-*"]) == [
        "lsgan-original", "inception-k8", "inception-k16", "inception-k32"]
    with pytest.raises(UnknownNameError):
        reg.match(["nope-*"])


def test_plugin_file_errors_are_one_line(tmp_path):
    with pytest.raises(PluginError, match="not found"):
        load_plugin_file(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError) as info:
        load_plugin_file(bad)
    assert "boom" in str(info.value) and "\n" not in str(info.value)
