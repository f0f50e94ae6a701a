"""tailor.progress: a bar on a terminal, plain lines without one."""

import io

from tailor.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_plain_lines_each_tenth_and_the_end() -> None:
    out = io.StringIO()
    with Progress(23, unit="chunk(s)", prefix="tailor build", stream=out) as p:
        for _ in range(23):
            p.advance()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[-1] == "tailor build: 23/23 chunk(s)"
    assert len(lines) == 10 and all(line.startswith("tailor build: ") for line in lines)


def test_on_a_terminal_a_bar_redrawn_in_place() -> None:
    out = _Tty()
    with Progress(4, unit="chunk(s)", prefix="tailor build", stream=out) as p:
        p.advance(4)
    assert "\r" in out.getvalue() and "4/4" in out.getvalue()


def test_nothing_to_do_prints_nothing() -> None:
    out = io.StringIO()
    with Progress(0, unit="chunk(s)", prefix="tailor build", stream=out):
        pass
    assert out.getvalue() == ""
