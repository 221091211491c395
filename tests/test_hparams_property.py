"""Property tests: any value for any setting of any mode, and any number for the CLI's numeric options, is either
taken within its declared range or refused in one line (IncompatibleError / exit 2); never another exception."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonprof.cli import MAX_BATCH_SIZE, parse_batch_sizes, parse_sets
from gonprof.modes import IncompatibleError, get_mode, list_modes
from gonprof.records.base import MAX_SEED, THREADS_PER_CORE, seed_problem, threads_problem

CHECKS = settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PER_KEY = settings(CHECKS, max_examples=40)  # about 55 settings: the whole file stays near 10 s

# What a user or a script may pass: ints of every size (a 400-digit one too), floats with the extremes, text,
# booleans, lists, None.
VALUES = st.one_of(
    st.integers(min_value=-3, max_value=20_000),
    st.integers(),
    st.sampled_from([0, 1, -1, 10**6, 10**6 + 1, 2**63, 10**400, -(10**400), True, False, None]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.0, 2.5, 1e-300, 5e-6]),
    st.text(max_size=12),
    st.sampled_from(["5", "1e308", "nan", "true", "pixel", "sum", "adam", ""]),
    st.lists(st.one_of(st.floats(), st.integers(min_value=-2, max_value=2)), max_size=3),
)

# What --set NAME=TEXT may carry: numbers as text (parsed as JSON), JSON's own infinities, digits past the
# 4,300 Python will convert, nesting past the recursion limit, and any text.
TEXTS = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{0,3})?(e[+-]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["Infinity", "-Infinity", "NaN", "1e308", "1" * 5000, "[" * 5000, "[0.5, 0.9]", "true",
                     "null", "{}", '"x"']),
)

KEYS = [(spec.name, key) for spec in list_modes() for key in spec.defaults]


def _assert_within(rule, value) -> None:
    """``value`` is what ``rule`` takes: the right type, inside the declared range."""
    if rule.kind == "int":
        assert type(value) is int and rule.low <= value <= rule.high
    elif rule.kind == "float":
        assert type(value) is float and math.isfinite(value) and rule.low <= value <= rule.high
        assert not (rule.low_open and value == rule.low)
    elif rule.kind == "bool":
        assert type(value) is bool
    elif rule.kind == "choice":
        assert value in rule.choices
    else:
        assert isinstance(value, tuple) and len(value) == 2 and all(0 <= b < 1 for b in value)


def _outcome(mode: str, key: str, value) -> None:
    spec = get_mode(mode)
    rule = spec.param(key)
    try:
        hp = spec.hparams(**{key: value})
    except IncompatibleError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 200, message
        assert message.startswith(f"hyper-parameter {key}=") and message.endswith(f"expected {rule.allowed()}")
        return
    _assert_within(rule, hp[key])


@pytest.mark.parametrize(("mode", "key"), KEYS)
@PER_KEY
@given(value=VALUES)
def test_any_value_of_any_setting_is_taken_in_range_or_refused_in_one_line(mode, key, value):
    _outcome(mode, key, value)


@pytest.mark.parametrize("mode", [spec.name for spec in list_modes()])
@CHECKS
@given(data=st.data())
def test_any_set_text_is_taken_in_range_or_refused_in_one_line(mode, data):
    """``--set NAME=TEXT`` as the command line reads it (parse_sets), for every setting of the mode."""
    key = data.draw(st.sampled_from(list(get_mode(mode).defaults)), label="key")
    text = data.draw(TEXTS, label="text")
    _outcome(mode, key, parse_sets([f"{key}={text}"])[key])


@CHECKS
@given(threads=st.one_of(st.none(), st.integers(), st.integers(min_value=-2, max_value=100)))
def test_threads_are_one_to_four_per_core_or_one_line(threads):
    import os

    problem = threads_problem(threads)
    limit = THREADS_PER_CORE * (os.cpu_count() or 1)
    if problem:
        assert "\n" not in problem and problem.startswith("--threads ") and f"from 1 to {limit:,}" in problem
        assert threads is not None and not 1 <= threads <= limit
    else:
        assert threads is None or 1 <= threads <= limit


@CHECKS
@given(seed=st.one_of(st.integers(), st.sampled_from([0, -1, MAX_SEED, MAX_SEED + 1, 10**23, -(10**5000)])))
def test_seeds_are_0_to_2_63_minus_1_or_one_line(seed):
    problem = seed_problem(seed)
    if problem:
        assert "\n" not in problem and len(problem) < 120 and "from 0 to 2**63-1" in problem
        assert not 0 <= seed <= MAX_SEED
    else:
        assert 0 <= seed <= MAX_SEED


@CHECKS
@given(text=st.one_of(
    st.text(alphabet="0123456789,- x", max_size=20),
    st.lists(st.integers(min_value=-2, max_value=MAX_BATCH_SIZE + 2), min_size=1, max_size=6).map(
        lambda xs: ",".join(map(str, xs))),
))
def test_batch_size_lists_are_distinct_positive_integers_or_one_line(text):
    sizes, problem = parse_batch_sizes(text)
    if problem:
        assert sizes == [] and "\n" not in problem and problem.startswith("--batch-sizes ")
        assert f"from 1 to {MAX_BATCH_SIZE:,}" in problem
    else:
        assert sizes and len(set(sizes)) == len(sizes) and all(1 <= b <= MAX_BATCH_SIZE for b in sizes)
        assert sizes == [int(part) for part in text.split(",")]
