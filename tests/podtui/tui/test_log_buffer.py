"""The logs screen's buffer: bounded, filtered incrementally, inverse filter, keep-context."""

from __future__ import annotations

from podtui.tui.log_buffer import LineKind, LogBuffer, clean_line


def rows(buffer: LogBuffer) -> list[str]:
    return [buffer.row(i)[1] for i in range(len(buffer))]


def test_holds_only_the_newest_lines_however_many_arrive():
    buffer = LogBuffer(capacity=1000)
    for start in range(0, 50_000, 700):
        buffer.extend([f"line {n}" for n in range(start, min(start + 700, 50_000))])
    assert buffer.total == 50_000
    assert len(buffer) == 1000
    assert rows(buffer)[0] == "line 49000" and rows(buffer)[-1] == "line 49999"


def test_filter_is_smart_case_and_applies_to_lines_arriving_later():
    buffer = LogBuffer()
    buffer.extend(["GET /v1/models 200", "error: OOM", "POST /v1/chat 200"])
    buffer.set_filter("ERROR")
    assert rows(buffer) == []             # capital letters: case-sensitive
    buffer.set_filter("error")
    assert rows(buffer) == ["error: OOM"]
    buffer.extend(["Error again", "fine"])
    assert rows(buffer) == ["error: OOM", "Error again"]
    assert buffer.highlight_spans("Error again") == [(0, 5)]


def test_inverse_filter_hides_matching_lines():
    buffer = LogBuffer()
    buffer.extend(["GET /health 200", "slot 0: prompt done", "GET /health 200", "load model"])
    buffer.set_filter("!/health")
    assert rows(buffer) == ["slot 0: prompt done", "load model"]
    assert buffer.highlight_spans("slot 0: prompt done") == []


def test_keep_context_shows_lines_around_matches_without_repeats():
    buffer = LogBuffer()
    buffer.set_context(2)
    buffer.set_filter("ERR")
    buffer.extend([f"l{n}" if n not in (5, 7, 20) else f"ERR{n}" for n in range(30)])
    shown = [(text, kind) for _, text, kind in (buffer.row(i) for i in range(len(buffer)))]
    assert [text for text, _ in shown] == ["l3", "l4", "ERR5", "l6", "ERR7", "l8", "l9",
                                           "l18", "l19", "ERR20", "l21", "l22"]
    assert [text for text, kind in shown if kind is LineKind.MATCH] == ["ERR5", "ERR7", "ERR20"]


def test_filtered_view_forgets_lines_that_left_the_ring():
    buffer = LogBuffer(capacity=100)
    buffer.set_filter("x")
    removed = 0
    for n in range(1000):
        removed += buffer.extend([f"x{n}" if n % 10 == 0 else f"y{n}"])
    assert rows(buffer) == [f"x{n}" for n in range(900, 1000, 10)]
    assert removed == 90


def test_lines_are_cleaned_of_colour_codes_tabs_and_newlines():
    assert clean_line("\x1b[31mred\x1b[0m\tx\r\n") == "red x"
