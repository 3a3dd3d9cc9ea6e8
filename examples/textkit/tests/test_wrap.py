from textkit import wrap


def test_wrap() -> None:
    assert wrap("the quick brown fox", 10) == ["the quick", "brown fox"]
