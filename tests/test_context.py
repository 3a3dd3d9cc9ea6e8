"""Context selection: ranking, trimming to the budget, focus spans."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.context import Context, select_context
from bot.index import RepoIndex, build_index
from bot.ranking import Focus, rank_files
from bot.tokens import count_tokens

INVOICE = dedent(
    '''\
    """Invoices for orders."""

    from .pricing import round_money
    from .tax import tax_rate


    class Invoice:
        """An invoice for one order."""

        def __init__(self, lines, country):
            self.lines = lines
            self.country = country

        def compute_total(self):
            """The amount due, tax included."""
            net = sum(line.price * line.quantity for line in self.lines)
            return round_money(net * (1 + tax_rate(self.country)))

        def render_pdf(self, path):
            """Write the invoice as a PDF document."""
            raise NotImplementedError(path)
    '''
)

PRICING = dedent(
    '''\
    """Prices, discounts and rounding of money amounts."""

    from decimal import ROUND_HALF_UP, Decimal


    class PriceRule:
        """A discount that applies to matching products."""

        def __init__(self, product, percent):
            self.product = product
            self.percent = percent

        def matches(self, product):
            """Whether the rule applies to this product."""
            return product == self.product


    def apply_discount(price, rules, product):
        """The price after the first matching rule's discount."""
        for rule in rules:
            if rule.matches(product):
                return price * (100 - rule.percent) / 100
        return price


    def round_money(amount):
        """Round an amount to whole cents, halves away from zero."""
        return Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    '''
)

TAX = dedent(
    '''\
    """Value-added tax by country."""

    VAT_RATES = {"DE": 0.19, "FR": 0.20, "NL": 0.21, "GB": 0.20, "IE": 0.23, "SE": 0.25}


    def tax_rate(country):
        """The VAT rate for a country code; zero outside the table."""
        return VAT_RATES.get(country.upper(), 0.0)


    def reverse_charge(country, business):
        """Whether the buyer pays the tax themselves (intra-EU business sales)."""
        return business and country.upper() in VAT_RATES and country.upper() != "DE"
    '''
)


def big_module(n: int = 60) -> str:
    parts = ['"""Many report helpers."""\n']
    for i in range(n):
        parts.append(
            f"\n\ndef report_section_{i}(rows, width={i}):\n"
            f'    """Format section {i} of the quarterly report."""\n'
            f"    out = []\n"
            f"    for row in rows:\n"
            f"        cell = str(row).ljust(width)\n"
            f"        out.append(cell[: width + {i}])\n"
            f"    total_{i} = len(out) * {i}\n"
            f"    return out, total_{i}\n"
        )
    return "".join(parts)


NATO = """alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november
oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"""
WORDS = NATO.split()


def filler_module(i: int) -> str:
    rnd = random.Random(i)
    names = rnd.sample(WORDS, 4)
    body = [f'"""Helpers for {names[0]} and {names[1]}."""\n']
    for j, name in enumerate(names):
        body.append(
            f"\n\ndef {name}_{i}_{j}(value):\n"
            f'    """Turn {name} values into {names[(j + 1) % 4]} values."""\n'
            f"    return [v for v in value if v != {j}]\n"
        )
    return "".join(body)


def project_files() -> dict[str, str]:
    files = {
        ".gitignore": "*.pyc\n",
        "setup.py": "from setuptools import setup\n\nsetup(name='shop', version='1.0')\n",
        "shop/__init__.py": "from .cart import Cart\nfrom .invoice import Invoice\n",
        "shop/invoice.py": INVOICE,
        "shop/pricing.py": PRICING,
        "shop/tax.py": TAX,
        "shop/cart.py": dedent(
            '''\
            """A shopping cart."""

            from .pricing import apply_discount


            class Cart:
                """Items a customer is about to buy."""

                def __init__(self):
                    self.items = []

                def add_item(self, product, price, quantity=1):
                    """Put a product in the cart."""
                    self.items.append((product, price, quantity))

                def remove_item(self, product):
                    """Take every unit of a product out of the cart."""
                    self.items = [i for i in self.items if i[0] != product]
            '''
        ),
        "shop/address.py": dedent(
            '''\
            """Postal addresses."""


            class Address:
                """Where a parcel goes."""

                def __init__(self, street, postcode, country):
                    self.street = street
                    self.postcode = normalize_postcode(postcode)
                    self.country = country


            def normalize_postcode(postcode):
                """Upper-case a postcode and drop its inner spaces."""
                return postcode.replace(" ", "").upper()
            '''
        ),
        "shop/shipping.py": dedent(
            '''\
            """Shipments and delivery estimates."""

            from .address import Address


            class Shipment:
                """Parcels on their way to an address."""

                def __init__(self, address: Address, parcels):
                    self.address = address
                    self.parcels = parcels


            def estimate_delivery(shipment, carrier):
                """Working days until the parcels arrive."""
                return 2 if shipment.address.country == carrier.country else 5
            '''
        ),
        "shop/emails.py": dedent(
            '''\
            """Mails to customers."""

            from .invoice import Invoice


            def send_receipt(invoice: Invoice, mailer):
                """Mail the customer a receipt with the invoice total."""
                mailer.send(f"Total: {invoice.compute_total()}")
            '''
        ),
        "shop/reports.py": big_module(),
        "tests/test_invoice.py": dedent(
            """\
            from shop.invoice import Invoice


            def test_compute_total_rounds_to_cents():
                assert Invoice([], "DE").compute_total() == 0
            """
        ),
        "tests/test_cart.py": dedent(
            """\
            from shop.cart import Cart


            def test_add_item():
                cart = Cart()
                cart.add_item("book", 10)
                assert cart.items
            """
        ),
        "docs/guide.md": "# Guide\n\n## Invoices\n\nInvoices compute totals with tax.\n",
    }
    for i in range(45):
        files[f"shop/misc/helpers_{i}.py"] = filler_module(i)
    files["shop/misc/__init__.py"] = ""
    return files


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    for rel, text in project_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    pygit2.init_repository(str(root), initial_head="main")
    return root


@pytest.fixture(scope="module")
def index(project: Path) -> RepoIndex:
    return build_index(project)


def by_path(ctx: Context) -> dict[str, str]:
    return {f.path: f.mode for f in ctx.files}


def test_named_symbol_ranks_its_file_first(index: RepoIndex) -> None:
    ranked = rank_files(index, "Fix rounding in Invoice.compute_total")
    assert ranked[0][0] == "shop/invoice.py"
    assert len(ranked) == len(index.files)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_literal_path_ranks_first(index: RepoIndex) -> None:
    assert rank_files(index, "Update shop/address.py so that it keeps the country")[0][0] == "shop/address.py"
    assert rank_files(index, "tax.py: support Danish VAT")[0][0] == "shop/tax.py"
    assert rank_files(index, "Refactor shop.shipping")[0][0] == "shop/shipping.py"


def test_identifier_words_match_split_identifiers(index: RepoIndex) -> None:
    assert rank_files(index, "Normalize postcodes with dashes")[0][0] == "shop/address.py"
    assert rank_files(index, "The delivery estimate ignores the carrier")[0][0] == "shop/shipping.py"


def test_tests_rank_below_code_unless_asked_for(index: RepoIndex) -> None:
    order = [p for p, _ in rank_files(index, "compute_total rounds the wrong way")]
    assert order.index("shop/invoice.py") < order.index("tests/test_invoice.py")
    order = [p for p, _ in rank_files(index, "Add a test that compute_total rounds to cents")]
    assert "tests/test_invoice.py" in order[:2]


def test_target_in_full_and_import_neighbours_as_skeletons(project: Path, index: RepoIndex) -> None:
    ctx = select_context(project, "Fix rounding in Invoice.compute_total", 1500, index=index)
    modes = by_path(ctx)
    assert ctx.files[0].path == "shop/invoice.py"
    assert modes["shop/invoice.py"] == "full"
    assert modes["shop/pricing.py"] == "skeleton"
    assert modes["shop/tax.py"] == "skeleton"
    assert modes["shop/emails.py"] in {"skeleton", "full"}  # an importer
    pricing = next(f for f in ctx.files if f.path == "shop/pricing.py").text
    assert pricing.startswith("### shop/pricing.py (skeleton)\n")
    assert "def round_money(amount):" in pricing
    assert '"""Round an amount to whole cents, halves away from zero."""' in pricing
    assert "quantize" not in pricing  # bodies are elided
    assert "..." in pricing


def test_full_text_is_verbatim_without_line_numbers(project: Path, index: RepoIndex) -> None:
    ctx = select_context(project, "Fix rounding in Invoice.compute_total", 1500, index=index)
    full = ctx.files[0]
    assert full.text == "### shop/invoice.py (full)\n" + INVOICE + "\n"
    assert ctx.render().startswith(full.text)


def test_large_target_is_sent_as_a_span(project: Path, index: RepoIndex) -> None:
    ctx = select_context(project, "report_section_17 truncates the last cell", 1200, index=index)
    first = ctx.files[0]
    assert (first.path, first.mode) == ("shop/reports.py", "span")
    source = index.read("shop/reports.py")
    start = source.index("def report_section_17(")
    body = source[start : source.index("\n\n\ndef report_section_18(")]
    assert body in first.text  # the named function in full
    assert "total_3 = len(out) * 3" not in first.text  # other bodies are not


def test_focus_span_comes_first_in_full(project: Path, index: RepoIndex) -> None:
    source = index.read("shop/reports.py")
    lines = source.splitlines()
    target = lines.index("    total_40 = len(out) * 40") + 1
    focus = Focus(path="shop/reports.py", start_line=target, end_line=target)
    for budget in (150, 600, 4000):
        ctx = select_context(project, "use a clearer name here", budget, focus=focus, index=index)
        first = ctx.files[0]
        assert first.path == "shop/reports.py"
        assert first.mode in {"span", "full"}
        assert "    total_40 = len(out) * 40" in first.text
        assert ctx.tokens <= budget
    # With room, the whole enclosing function is there.
    ctx = select_context(project, "use a clearer name here", 600, focus=focus, index=index)
    start = source.index("def report_section_40(")
    assert source[start : source.index("\n\n\ndef report_section_41(")] in ctx.files[0].text


def test_focus_hunk_words_guide_the_rest(project: Path, index: RepoIndex) -> None:
    focus = Focus("shop/emails.py", 6, 8, hunk="+    mailer.send(invoice.compute_total())")
    ctx = select_context(project, "please simplify", 3000, focus=focus, index=index)
    assert ctx.files[0].path == "shop/emails.py"
    assert "shop/invoice.py" in ctx.paths()[:3]


def test_small_budget_degrades_instead_of_dropping(project: Path, index: RepoIndex) -> None:
    ctx = select_context(project, "Fix rounding in Invoice.compute_total", 60, index=index)
    assert "shop/invoice.py" in ctx.paths()
    assert by_path(ctx)["shop/invoice.py"] in {"skeleton", "listing"}
    assert ctx.tokens <= 60


def test_listing_lines_name_the_rest(project: Path, index: RepoIndex) -> None:
    ctx = select_context(project, "Fix rounding in Invoice.compute_total", 900, index=index)
    listings = [f for f in ctx.files if f.mode == "listing"]
    assert listings
    for f in listings:
        assert f.text.startswith(f"### {f.path} (listing)") and f.text.count("\n") == 1


def test_exclude_and_json(project: Path, index: RepoIndex) -> None:
    ctx = select_context(
        project, "Fix rounding in Invoice.compute_total", 2000, index=index, exclude={"shop/invoice.py"}
    )
    assert "shop/invoice.py" not in ctx.paths()
    data = ctx.to_json()
    assert data["tokens"] == ctx.tokens
    assert [f["path"] for f in data["files"]] == ctx.paths()
    assert {f["mode"] for f in data["files"]} <= {"full", "span", "skeleton", "listing"}


def test_builds_and_caches_the_index_itself(project: Path, tmp_path: Path) -> None:
    ctx = select_context(project, "estimate_delivery", 800, cache_dir=tmp_path)
    assert ctx.files[0].path == "shop/shipping.py"
    assert any(tmp_path.iterdir())


INSTRUCTIONS = [
    "Fix rounding in Invoice.compute_total",
    "Normalize postcodes with dashes",
    "report_section_17 truncates the last cell",
    "Update shop/address.py",
    "add tests",
    "",
    "zzz nothing matches this",
]


@dataclass
class Shop:
    """The generated project and its index, with a short repr: Hypothesis
    prints its arguments when a case fails."""

    root: Path
    index: RepoIndex

    def __repr__(self) -> str:
        return f"Shop({self.root})"


@pytest.fixture(scope="module")
def shop(project: Path, index: RepoIndex) -> Shop:
    return Shop(project, index)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=st.integers(min_value=50, max_value=5000),
    instruction=st.sampled_from(INSTRUCTIONS),
    focus_line=st.one_of(st.none(), st.integers(min_value=1, max_value=600)),
)
def test_budget_is_never_exceeded(shop: Shop, budget: int, instruction: str, focus_line: int | None) -> None:
    focus = Focus("shop/reports.py", focus_line, focus_line + 3) if focus_line else None
    ctx = select_context(shop.root, instruction, budget, focus=focus, index=shop.index)
    rendered = ctx.render()
    assert ctx.tokens <= budget
    assert count_tokens(rendered) == ctx.tokens
    assert ctx.budget == budget
    assert len(set(ctx.paths())) == len(ctx.files)
    for f in ctx.files:
        assert f.text.startswith(f"### {f.path} ({f.mode})")
        assert f.tokens == count_tokens(f.text)
    if focus is not None and ctx.files:
        assert ctx.files[0].path == "shop/reports.py"


def runner_module() -> str:
    """A command-line module: a short `run_command`, and a long method that
    says "run" and "command" far more often."""
    steps = "\n".join(
        f"            command_{i} = self.commands[{i}]\n"
        f"            self.run(command_{i}, attempt={i})\n"
        f"            self.log_command(command_{i}, 'run {i}')"
        for i in range(15)
    )
    helpers = "\n\n\n".join(
        f'def format_column_{i}(value):\n    """Column {i} of the table."""\n'
        f"    return str(value).rjust({i + 4})"
        for i in range(40)
    )
    return (
        '"""Command-line entry points."""\n\n\n'
        "def run_command(host, port):\n"
        '    """Serve the app on host:port until interrupted."""\n'
        "    server = make_server(host, port)\n"
        "    server.serve_forever()\n\n\n"
        "class Runner:\n"
        '    """Replays recorded commands."""\n\n'
        "    def execute(self):\n"
        '        """Run every recorded command in order."""\n'
        "        for attempt in range(3):\n"
        f"{steps}\n\n\n"
        f"{helpers}\n"
    )


@pytest.fixture(scope="module")
def runner_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runner")
    (root / "tool").mkdir()
    (root / "tool" / "cli.py").write_text(runner_module(), encoding="utf-8")
    (root / "tool" / "server.py").write_text(
        'def make_server(host, port):\n    """A server bound to host:port."""\n    return (host, port)\n',
        encoding="utf-8",
    )
    pygit2.init_repository(str(root), initial_head="main")
    return root


def test_words_spelling_an_identifier_select_its_span(runner_repo: Path) -> None:
    index = build_index(runner_repo)
    ctx = select_context(runner_repo, "Add a timeout to the run command", 2000, index=index)
    sent = next(f for f in ctx.files if f.path == "tool/cli.py")
    assert sent.mode == "span"
    source = index.read("tool/cli.py")
    run_command = source[source.index("def run_command(") : source.index("\n\n\nclass Runner:")]
    assert run_command in sent.text  # the definition the phrase spells, in full
    assert "command_14 = self.commands[14]" not in sent.text  # not the longer, looser match
