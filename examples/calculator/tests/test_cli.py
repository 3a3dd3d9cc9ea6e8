import io

from calculator.cli import main


def run(text: str) -> list[str]:
    out = io.StringIO()
    main(io.StringIO(text), out)
    return out.getvalue().splitlines()


def test_session() -> None:
    assert run("2 + 3\nms\nmr\nm * 2\nquit\n1 + 1\n") == ["5", "stored", "5", "10"]


def test_errors_are_reported() -> None:
    assert run("1 / 0\nmr\n") == ["error: division by zero", "error: memory is empty"]
