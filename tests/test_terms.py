from bot.terms import SCANS_BEFORE_INVERTING, TermCounts, TermTable


def test_term_counts_find_whole_terms_only() -> None:
    counts = TermCounts.of({"proxi": 3, "proxi_url": 1, "url": 12})
    assert counts.total == 16
    assert (counts.get("proxi"), counts.get("url"), counts.get("prox"), counts.get("rl")) == (3, 12, 0, 0)
    assert "proxi_url" in counts and "proxy" not in counts


def table() -> TermTable:
    return TermTable(
        [
            ("empty.py", TermCounts.of({})),
            ("a.py", TermCounts.of({"get": 2, "env": 1})),
            ("also_empty.py", TermCounts.of({})),
            ("b.py", TermCounts.of({"env": 7})),
            ("c.py", TermCounts.of({"environ": 4, "getting started: env": 1})),  # a heading's text
        ]
    )


def test_term_table_maps_each_hit_to_its_file() -> None:
    assert_postings(table())


def test_a_table_asked_for_many_terms_answers_alike_from_its_dict() -> None:
    many = table()
    for n in range(SCANS_BEFORE_INVERTING):
        assert many.postings(f"absent{n}") == {}
    assert_postings(many)
    assert many.inverted is not None


def assert_postings(table: TermTable) -> None:
    assert table.postings("env") == {"a.py": 1, "b.py": 7}
    assert table.postings("environ") == {"c.py": 4}
    assert table.postings("get") == {"a.py": 2}
    assert table.postings("nowhere") == {}
