from bot.terms import TermCounts, TermTable


def test_term_counts_find_whole_terms_only() -> None:
    counts = TermCounts.of({"proxi": 3, "proxi_url": 1, "url": 12})
    assert counts.total == 16
    assert (counts.get("proxi"), counts.get("url"), counts.get("prox"), counts.get("rl")) == (3, 12, 0, 0)
    assert "proxi_url" in counts and "proxy" not in counts


def test_term_table_maps_each_hit_to_its_file() -> None:
    table = TermTable(
        [
            ("empty.py", TermCounts.of({})),
            ("a.py", TermCounts.of({"get": 2, "env": 1})),
            ("also_empty.py", TermCounts.of({})),
            ("b.py", TermCounts.of({"env": 7})),
            ("c.py", TermCounts.of({"environ": 4})),
        ]
    )
    assert table.postings("env") == {"a.py": 1, "b.py": 7}
    assert table.postings("environ") == {"c.py": 4}
    assert table.postings("get") == {"a.py": 2}
    assert table.postings("nowhere") == {}
