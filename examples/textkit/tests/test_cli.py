import io

from textkit.cli import main


def test_slug_command() -> None:
    out = io.StringIO()
    assert main(["slug", "Hello", "World"], io.StringIO(), out) == 0
    assert out.getvalue() == "hello-world\n"
