from textkit import top_words, word_count


def test_word_count() -> None:
    assert word_count("one two  three") == 3


def test_top_words() -> None:
    assert top_words("a b a c b a", 2) == [("a", 3), ("b", 2)]
