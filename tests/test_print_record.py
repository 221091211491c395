"""``gonprof.render.print_record`` (what embedded loops print) keeps every number whole at any terminal width,
as ``gonprof report`` does."""

from __future__ import annotations

import io

from rich.console import Console

from gonprof.render import print_record
from memview_records import huge_profile


def _printed(rec, width: int) -> str:
    buf = io.StringIO()
    print_record(rec, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


def test_print_record_keeps_every_number_whole_at_80_columns():
    rec = huge_profile()
    text = _printed(rec, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    # 1,510,432,001 parameters of 4 bytes: 6,041,728,004 B = 5,761.84 MiB; their gradients as many, the
    # optimizer state twice as many (Adam's two moments): 12,083,456,008 B = 11,523.68 MiB; persistent state
    # 4 + 4 + 8 bytes per parameter = 24,166,912,016 B = 23,047.36 MiB = 22.51 GiB
    for number in ("1,510,432,001", "5,761.84", "11,523.68", "23,047.36", "22.51 GiB"):
        assert number in text, number


def test_print_record_of_several_records_keeps_their_numbers_whole_at_80_columns():
    text = _printed([huge_profile(), huge_profile()], 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.count("1,510,432,001") == 2
