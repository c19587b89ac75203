"""The crmsync API driven from Python through the generated bindings and the real shared
library: every test goes through uniffi, exactly as a Kotlin or Swift app would."""

import asyncio
import datetime as dt
import json
import threading
import time

import pytest

import crmsync
from crmsync import (
    ChangeKind,
    CrmError,
    ExchangeRates,
    FieldDef,
    FieldKind,
    FieldOp,
    FieldValue,
    Filter,
    FilterOp,
    ListQuery,
    Money,
    NewRecord,
    OpenOptions,
    OrderLine,
    RfmOptions,
    SearchFilters,
    Sort,
    SortOrder,
)

UTC = dt.timezone.utc


def text(s):
    return FieldValue.TEXT(value=s)


def company(engine, name, **fields):
    values = {"name": text(name)}
    values.update(fields)
    return engine.create("company", values)


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- open, ids


def test_in_memory_engine_has_a_device_and_a_workspace(engine):
    assert len(engine.device_id()) == 32
    assert len(engine.workspace_id()) == 36
    assert not engine.is_closed()
    assert engine.count("company") == 0


# ---------------------------------------------------------------- CRUD, every value kind


EVERY_KIND = {
    "title": FieldDef(kind=FieldKind.TEXT(), required=True),
    "notes": FieldDef(kind=FieldKind.LONG_TEXT()),
    "visitors": FieldDef(kind=FieldKind.INT(min=0, max=100)),
    "budget": FieldDef(kind=FieldKind.MONEY()),
    "done": FieldDef(kind=FieldKind.BOOL()),
    "at": FieldDef(kind=FieldKind.TIMESTAMP()),
    "day": FieldDef(kind=FieldKind.DATE()),
    "mood": FieldDef(kind=FieldKind.ENUM(values=["good", "bad"])),
    "tags": FieldDef(kind=FieldKind.STRINGS()),
    "emails": FieldDef(kind=FieldKind.EMAILS()),
    "account": FieldDef(kind=FieldKind.LINK(types=["company"])),
    "attendees": FieldDef(kind=FieldKind.LINKS(types=["contact"])),
    "items": FieldDef(kind=FieldKind.LINES()),
}


def test_create_get_update_delete_restore_with_every_value_kind(engine):
    assert engine.define_type("visit_report", EVERY_KIND) == "visit_report"
    acme = company(engine, "Acme")
    ada = engine.create(
        "contact", {"first_name": text("Ada"), "company": FieldValue.LINK(id=acme.id)}
    )
    product = engine.create("product", {"sku": text("BOLT-1"), "name": text("Bolt")})
    at = dt.datetime(2025, 3, 1, 10, 30, 15, 123000, tzinfo=UTC)
    values = {
        "title": text("Quarterly visit"),
        "notes": FieldValue.LONG_TEXT(value="Met the team. 会议很顺利."),
        "visitors": FieldValue.INT(value=7),
        "budget": FieldValue.MONEY(minor=125050, currency="EUR"),
        "done": FieldValue.BOOL(value=True),
        "at": FieldValue.TIMESTAMP(value=at),
        "day": FieldValue.DATE(value="2025-03-01"),
        "mood": FieldValue.ENUM(value="good"),
        "tags": FieldValue.STRINGS(values=["vip", "q1"]),
        "emails": FieldValue.STRINGS(values=["ada@acme.example"]),
        "account": FieldValue.LINK(id=acme.id),
        "attendees": FieldValue.LINKS(ids=[ada.id]),
        "items": FieldValue.LINES(
            lines=[
                OrderLine(
                    product=product.id,
                    sku=None,
                    quantity=3,
                    unit_price=Money(minor=1999, currency="EUR"),
                ),
                OrderLine(sku="NUT-9", quantity=10, unit_price=Money(minor=5, currency="EUR")),
            ]
        ),
    }
    created = engine.create("visit_report", values)
    assert created.record_type == "visit_report"
    assert created.fields == values
    assert created.created_at.tzinfo is not None
    assert created.created_by == engine.device_id()

    got = engine.get(created.id)
    assert got == created

    updated = engine.update(
        created.id,
        [
            FieldOp.SET(field="visitors", value=FieldValue.INT(value=8)),
            FieldOp.UNSET(field="done"),
            FieldOp.SPLICE_TEXT(field="notes", index=0, delete=3, insert="Saw"),
            FieldOp.ADD_ITEM(field="tags", item=text("renewal")),
            FieldOp.REMOVE_ITEM(field="tags", item=text("q1")),
        ],
    )
    assert updated.fields["visitors"] == FieldValue.INT(value=8)
    assert "done" not in updated.fields
    assert updated.fields["notes"] == FieldValue.LONG_TEXT(value="Saw the team. 会议很顺利.")
    assert updated.fields["tags"] == FieldValue.STRINGS(values=["vip", "renewal"])
    assert engine.get(created.id) == updated
    assert engine.count("visit_report") == 1

    engine.delete(created.id)
    assert engine.get(created.id) is None
    assert engine.count("visit_report") == 0
    engine.delete(created.id)  # deleting twice does nothing
    restored = engine.restore(created.id)
    assert restored.fields == updated.fields
    assert engine.get(created.id) is not None


def test_create_many_is_async_and_links_within_the_batch(engine):
    import uuid

    acme_id = str(uuid.uuid4())
    ids = run(
        engine.create_many(
            [
                NewRecord(record_type="company", fields={"name": text("Acme")}, id=acme_id),
                NewRecord(
                    record_type="contact",
                    fields={"last_name": text("Hopper"), "company": FieldValue.LINK(id=acme_id)},
                ),
            ]
        )
    )
    assert ids[0] == acme_id
    assert engine.get(ids[1]).fields["company"] == FieldValue.LINK(id=acme_id)


def test_list_filters_sorts_and_pages(engine):
    for i, stage in enumerate(["proposal", "negotiation", "proposal", "closed_won"]):
        engine.create(
            "deal",
            {
                "name": text(f"Deal {i}"),
                "stage": text(stage),
                "amount": FieldValue.MONEY(minor=1000 * (i + 1), currency="USD"),
            },
        )
    proposals = run(
        engine.list(
            ListQuery(
                record_type="deal",
                filters=[Filter(field="stage", op=FilterOp.EQ, value=text("proposal"))],
                sort=Sort(field="name", order=SortOrder.DESC),
            )
        )
    )
    assert [r.fields["name"] for r in proposals] == [text("Deal 2"), text("Deal 0")]
    page = run(engine.list(ListQuery(record_type="deal", offset=1, limit=2)))
    assert [r.fields["name"] for r in page] == [text("Deal 1"), text("Deal 2")]
    with_amount = run(
        engine.list(
            ListQuery(record_type="deal", filters=[Filter(field="amount", op=FilterOp.EXISTS)])
        )
    )
    assert len(with_amount) == 4
    with pytest.raises(CrmError.InvalidInput, match="needs a value"):
        run(engine.list(ListQuery(record_type="deal", filters=[Filter(field="x", op=FilterOp.EQ)])))


# ---------------------------------------------------------------- errors


def test_validation_errors_arrive_as_validation_with_type_field_and_reason(engine):
    with pytest.raises(CrmError.Validation) as missing:
        engine.create("company", {"industry": text("Retail")})
    e = missing.value
    assert (e.record_type, e.field, e.reason) == ("company", "name", "is required")
    assert e.detail == "invalid record: company.name: is required"
    assert isinstance(e, CrmError)

    with pytest.raises(CrmError.Validation) as bad_email:
        engine.create(
            "contact",
            {"first_name": text("Ada"), "emails": FieldValue.STRINGS(values=["ada-at-home"])},
        )
    assert bad_email.value.field == "emails"
    assert "'ada-at-home' is not a valid email address" in bad_email.value.reason

    with pytest.raises(CrmError.Validation) as bad_stage:
        engine.create("deal", {"name": text("X"), "stage": text("nowhere")})
    assert bad_stage.value.field == "stage"
    assert bad_stage.value.reason.startswith("'nowhere' is not one of: prospecting")

    with pytest.raises(CrmError.Validation) as wrong_kind:
        company(engine, "Acme", employee_count=text("many"))
    assert wrong_kind.value.reason == "expects integer, got text"

    with pytest.raises(CrmError.Validation) as unknown:
        company(engine, "Acme", colour=text("red"))
    assert unknown.value.field == "colour"

    with pytest.raises(CrmError.Validation) as unknown_type:
        engine.create("spaceship", {"name": text("X")})
    assert unknown_type.value.field is None
    assert unknown_type.value.record_type == "spaceship"
    assert engine.count("company") == 0


def test_other_errors_name_what_is_wrong(engine):
    with pytest.raises(CrmError.InvalidInput, match="'nope' is not a record id"):
        engine.get("nope")
    with pytest.raises(CrmError.InvalidInput, match="'XYZ' is not an ISO 4217 currency"):
        company(engine, "Acme", annual_revenue=FieldValue.MONEY(minor=1, currency="XYZ"))
    with pytest.raises(CrmError.InvalidInput, match="not a date"):
        engine.define_field("deal", "signed_on", FieldDef(kind=FieldKind.DATE()))
        engine.create("deal", {"name": text("X"), "signed_on": FieldValue.DATE(value="31/12/2025")})

    import uuid

    missing = str(uuid.uuid4())
    with pytest.raises(CrmError.NotFound) as not_found:
        engine.update(missing, [FieldOp.SET(field="name", value=text("X"))])
    assert not_found.value.id == missing
    assert missing in not_found.value.detail

    acme = company(engine, "Acme")
    engine.delete(acme.id)
    with pytest.raises(CrmError.Deleted, match="restore"):
        engine.update(acme.id, [FieldOp.SET(field="industry", value=text("Retail"))])

    with pytest.raises(CrmError.Schema):
        engine.define_field("company", "name", FieldDef(kind=FieldKind.INT(min=None, max=None)))


# ---------------------------------------------------------------- history


def test_history_get_at_and_field_history(engine):
    acme = company(engine, "Acme")
    engine.update(acme.id, [FieldOp.SET(field="industry", value=text("Retail"))])
    engine.update(acme.id, [FieldOp.SET(field="industry", value=text("Energy"))])
    history = engine.history(acme.id)
    assert len(history) == 3
    assert history[0].created and history[0].fields == ["name"]
    assert history[1].fields == ["industry"] and not history[1].created
    assert history[2].by == engine.device_id()
    assert history[0].at <= history[2].at

    first = engine.get_at(acme.id, history[0].version)
    assert "industry" not in first.fields
    second = engine.get_at(acme.id, history[1].version)
    assert second.fields["industry"] == text("Retail")

    changes = engine.field_history(acme.id, "industry")
    assert [c.value for c in changes] == [text("Retail"), text("Energy")]

    engine.delete(acme.id)
    assert engine.history(acme.id)[-1].deleted is True
    with pytest.raises(CrmError.InvalidInput, match="not a version"):
        engine.get_at(acme.id, "not-a-version")


# ---------------------------------------------------------------- merge and conflicts


def send(src, dst, record_id):
    """Moves what `dst` lacks of a record from `src` over the merge path."""
    batch = src.export_changes(record_id, dst.heads(record_id))
    assert batch is not None
    return dst.apply_changes([batch])


def test_concurrent_edits_merge_and_show_the_same_conflict_on_both_replicas(workspace):
    options = OpenOptions(workspace_id=workspace, search=False)
    a = crmsync.Engine.in_memory_with(options)
    b = crmsync.Engine.in_memory_with(options)
    assert a.workspace_id() == b.workspace_id() == workspace
    acme = company(a, "Acme")
    merged = send(a, b, acme.id)
    assert [(c.id, c.kind) for c in merged] == [(acme.id, ChangeKind.MERGED)]
    assert b.get(acme.id).fields == acme.fields

    a.update(acme.id, [FieldOp.SET(field="industry", value=text("Retail"))])
    b.update(acme.id, [FieldOp.SET(field="industry", value=text("Energy"))])
    b.update(acme.id, [FieldOp.SET(field="phone", value=text("+1 555 0100"))])
    send(a, b, acme.id)
    send(b, a, acme.id)

    assert a.heads(acme.id) == b.heads(acme.id)
    ra, rb = a.get(acme.id), b.get(acme.id)
    assert ra.fields == rb.fields
    assert ra.fields["phone"] == text("+1 555 0100")
    conflicts = a.conflicts(acme.id)
    assert conflicts == b.conflicts(acme.id)
    assert len(conflicts) == 1
    (conflict,) = conflicts
    assert conflict.field == "industry"
    assert conflict.value == ra.fields["industry"]
    assert {conflict.value.value, conflict.others[0].value} == {"Retail", "Energy"}
    assert send(a, b, acme.id) == []  # nothing new to merge

    import uuid

    assert a.export_changes(str(uuid.uuid4()), []) is None
    with pytest.raises(CrmError.InvalidInput, match="change hash"):
        a.export_changes(acme.id, ["beef"])
    a.close_database()
    b.close_database()


# ---------------------------------------------------------------- search


def test_search_is_async_ranks_filters_and_reports_bad_queries(engine):
    company(engine, "Acme Logistics", industry=text("Transport"))
    company(engine, "Globex")
    engine.create("contact", {"first_name": text("Ada"), "last_name": text("Acmeson")})
    results = run(engine.search("acme logistics", with_total=True))
    assert results.total >= 1
    assert run(engine.search("acme logistics")).total is None
    assert results.hits[0].title == "Acme Logistics"
    assert results.hits[0].record_type == "company"
    only_contacts = run(engine.search("acme", SearchFilters(types=["contact"])))
    assert [h.title for h in only_contacts.hits] == ["Ada Acmeson"]
    page = run(engine.search("acme", None, 0, 1))
    assert len(page.hits) == 1
    for hit in results.hits:
        if hit.snippet is not None:
            raw = hit.snippet.text.encode()
            for h in hit.snippet.highlights:
                assert 0 <= h.start < h.end <= len(raw)
    with pytest.raises(CrmError.Query) as bad:
        run(engine.search("colour:red"))
    assert bad.value.position == 0
    assert "unknown field 'colour'" in bad.value.detail


def test_search_disabled_is_an_error():
    e = crmsync.Engine.in_memory_with(OpenOptions(search=False))
    with pytest.raises(CrmError.Search, match="disabled"):
        run(e.search("acme"))
    e.close_database()


# ---------------------------------------------------------------- analytics


def test_analytics_calls(engine):
    acme = company(engine, "Acme")
    for i, (stage, minor) in enumerate([("proposal", 100000), ("negotiation", 50000)]):
        engine.create(
            "deal",
            {
                "name": text(f"Deal {i}"),
                "company": FieldValue.LINK(id=acme.id),
                "stage": text(stage),
                "amount": FieldValue.MONEY(minor=minor, currency="USD"),
            },
        )
    report = run(engine.pipeline_report())
    assert report.open.deals == 2
    assert report.open.value == [Money(minor=150000, currency="USD")]
    assert [g.group for g in report.by_stage if g.totals.deals] == ["proposal", "negotiation"]

    funnel = run(engine.stage_funnel())
    assert funnel.deals == 2

    engine.create(
        "order",
        {
            "customer": FieldValue.LINK(id=acme.id),
            "ordered_at": FieldValue.TIMESTAMP(value=dt.datetime(2025, 3, 1, 10, tzinfo=UTC)),
            "total": FieldValue.MONEY(minor=12000, currency="USD"),
        },
    )
    rows = run(engine.rfm(RfmOptions(as_of="2025-04-01", rates=ExchangeRates(target="USD"))))
    assert [(r.customer, r.recency_days, r.frequency) for r in rows] == [(acme.id, 31, 1)]
    assert rows[0].monetary == Money(minor=12000, currency="USD")
    values = run(
        engine.lifetime_values(
            crmsync.CltvOptions(as_of="2025-04-01", rates=ExchangeRates(target="USD"))
        )
    )
    assert values[0].customer == acme.id and values[0].rank == 1

    engine.create("case", {"subject": text("Broken bolt"), "status": text("open")})
    stats = run(engine.service_stats())
    assert stats.cases == 1 and stats.by_status == {"open": 1}

    engine.create(
        "order",
        {
            "customer": FieldValue.LINK(id=acme.id),
            "ordered_at": FieldValue.TIMESTAMP(value=dt.datetime(2025, 3, 2, tzinfo=UTC)),
            "total": FieldValue.MONEY(minor=500, currency="EUR"),
        },
    )
    with pytest.raises(CrmError.Analytics, match="no exchange rate from EUR to USD"):
        run(engine.rfm(RfmOptions(as_of="2025-04-01", rates=ExchangeRates(target="USD"))))
    euro = ExchangeRates(target="USD", rates={"EUR": 1.1})
    rows = run(engine.rfm(RfmOptions(as_of="2025-04-01", window_days=90, rates=euro)))
    assert rows[0].monetary == Money(minor=12550, currency="USD")


def order(engine, customer, day, skus, minor=1000):
    lines = [
        OrderLine(sku=sku, quantity=1, unit_price=Money(minor=minor, currency="USD"))
        for sku in skus
    ]
    return engine.create(
        "order",
        {
            "customer": FieldValue.LINK(id=customer),
            "ordered_at": FieldValue.TIMESTAMP(value=day),
            "lines": FieldValue.LINES(lines=lines),
            "total": FieldValue.MONEY(minor=minor * len(skus), currency="USD"),
        },
    )


def test_forecast_associations_recommendations_and_visit_plan(engine):
    acme = company(engine, "Acme", region=text("North"))
    globex = company(engine, "Globex", region=text("South"))
    baskets = [["BOLT", "NUT"], ["BOLT", "NUT"], ["BOLT", "NUT", "WASHER"], ["WASHER"]]
    for month, skus in enumerate(baskets * 6):
        day = dt.datetime(2023 + month // 12, month % 12 + 1, 5, tzinfo=UTC)
        order(engine, acme.id, day, skus, minor=1000 + 100 * month)
    order(engine, globex.id, dt.datetime(2024, 12, 20, tzinfo=UTC), ["BOLT"])
    usd = ExchangeRates(target="USD")

    forecast = run(engine.sales_forecast(crmsync.ForecastOptions(rates=usd, horizon=3)))
    assert forecast.currency == "USD"
    assert forecast.history[0].month == "2023-01" and len(forecast.history) == 24
    assert [m.month for m in forecast.forecast] == ["2025-01", "2025-02", "2025-03"]
    assert forecast.model.method == crmsync.ForecastMethod.HOLT_WINTERS
    assert forecast.model.fitted and forecast.model.n == 24
    fixed = crmsync.Smoothing(alpha=0.5, beta=0.1, gamma=0.1)
    holt = run(
        engine.sales_forecast(
            crmsync.ForecastOptions(rates=usd, season_length=0, smoothing=fixed, through="2023-06-30")
        )
    )
    assert holt.model.method == crmsync.ForecastMethod.HOLT and not holt.model.fitted
    assert holt.model.smoothing.alpha == 0.5 and len(holt.history) == 6

    associations = run(engine.product_associations(crmsync.AprioriOptions(min_support=0.3)))
    assert associations.baskets == 25
    assert ["BOLT", "NUT"] in [i.items for i in associations.itemsets]
    rule = next(r for r in associations.rules if r.antecedent == ["NUT"])
    assert rule.consequent == ["BOLT"] and rule.confidence == 1.0
    assert run(engine.product_associations()).rules  # core defaults

    (suggestion,) = run(
        engine.recommend_products(globex.id, 1, crmsync.AprioriOptions(min_support=0.3))
    )
    assert suggestion.item == "NUT" and suggestion.because.antecedent == ["BOLT"]

    engine.create("case", {"subject": text("Broken bolt"), "status": text("open"),
                           "company": FieldValue.LINK(id=globex.id)})
    plan = run(engine.visit_plan(crmsync.VisitPlanOptions(as_of="2025-01-15", rates=usd)))
    assert {c.customer for c in plan} == {acme.id, globex.id}
    assert plan == sorted(plan, key=lambda c: -c.score)
    g = next(c for c in plan if c.customer == globex.id)
    assert g.record_type == "company" and g.name == "Globex" and g.open_cases == 1
    assert crmsync.FactorKind.OPEN_CASES in [f.kind for f in g.factors]
    assert g.days_since_activity is None
    north = run(
        engine.visit_plan(
            crmsync.VisitPlanOptions(
                as_of="2025-01-15",
                rates=usd,
                region="north",
                limit=5,
                weights=crmsync.VisitWeights(deal_value=0, inactivity=1, risk=0, cases=0),
            )
        )
    )
    assert [c.customer for c in north] == [acme.id]
    with pytest.raises(CrmError.InvalidInput, match="not a date"):
        run(engine.visit_plan(crmsync.VisitPlanOptions(as_of="soon", rates=usd)))


def test_schema_lists_types_fields_and_the_pipeline(engine):
    engine.define_field("company", "tier", FieldDef(kind=FieldKind.ENUM(values=["a", "b"])))
    schema = engine.schema()
    assert {"company", "contact", "deal", "activity", "case", "order", "product",
            "campaign"} <= set(schema.types)
    name = schema.types["company"].fields["name"]
    assert (name.kind, name.required, name.custom) == (FieldKind.TEXT(), True, False)
    tier = schema.types["company"].fields["tier"]
    assert tier.kind == FieldKind.ENUM(values=["a", "b"]) and tier.custom
    assert schema.types["deal"].fields["company"].kind == FieldKind.LINK(types=["company"])
    assert schema.types["contact"].one_of == [["first_name", "last_name"]]
    assert schema.pipeline == engine.pipeline()


# ---------------------------------------------------------------- import / export


CSV = "name,industry,employee_count\nAcme,Retail,50\n,Energy,10\nGlobex,Energy,many\nInitech,IT,7\n"


def test_import_reports_bad_rows_and_strict_import_refuses_the_file(engine, tmp_path):
    report = run(engine.import_csv("company", CSV))
    assert len(report.created) == 2
    assert [e.line for e in report.errors] == [3, 4]
    assert "company.name: is required" in report.errors[0].message

    with pytest.raises(CrmError.Import) as refused:
        run(engine.import_csv("company", CSV, strict=True))
    assert [r.line for r in refused.value.rows] == [3, 4]
    assert engine.count("company") == 2

    path = tmp_path / "more.csv"
    path.write_text("name\nUmbrella\n")
    assert len(run(engine.import_csv_file("company", str(path))).created) == 1
    with pytest.raises(CrmError.Io, match="cannot open"):
        run(engine.import_csv_file("company", str(tmp_path / "missing.csv")))

    exported = run(engine.export_csv("company"))
    assert exported.splitlines()[0].startswith("id,")
    assert "Initech" in exported
    rows = json.loads(run(engine.export_json("company")))
    assert sorted(r["fields"]["name"] for r in rows) == ["Acme", "Initech", "Umbrella"]


# ---------------------------------------------------------------- async


def test_async_calls_do_not_block_the_event_loop(engine):
    rows = "".join(f"Company {i},Retail\n" for i in range(3000))

    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        report = await engine.import_csv("company", "name,industry\n" + rows)
        lists = await asyncio.gather(
            *(engine.list(ListQuery(record_type="company", limit=100)) for _ in range(4))
        )
        done.set()
        await task
        return report, lists, ticks

    report, lists, ticks = run(main())
    assert len(report.created) == 3000
    assert all(len(page) == 100 for page in lists)
    assert ticks > 3  # the loop kept running while the import ran on the runtime


# ---------------------------------------------------------------- change listener


class Collector:
    def __init__(self, fail_first=False):
        self.changes = []
        self.threads = set()
        self.lock = threading.Lock()
        self.event = threading.Event()
        self.fail_first = fail_first
        self.calls = 0

    def on_change(self, changes):
        with self.lock:
            self.calls += 1
            self.threads.add(threading.get_ident())
            if self.fail_first:
                self.fail_first = False
                raise RuntimeError("listener bug")
            self.changes.extend(changes)
        self.event.set()

    def wait_for(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.changes) >= n:
                    return list(self.changes)
            self.event.wait(0.05)
            self.event.clear()
        with self.lock:
            return list(self.changes)


def test_change_listener_is_told_of_writes_off_the_caller_thread_until_unregistered(engine):
    collector = Collector()
    handle = engine.register_listener(collector)
    assert handle.is_active()
    acme = company(engine, "Acme")
    engine.update(acme.id, [FieldOp.SET(field="industry", value=text("Retail"))])
    engine.delete(acme.id)
    engine.restore(acme.id)
    changes = collector.wait_for(4)
    assert [(c.id, c.kind) for c in changes] == [
        (acme.id, ChangeKind.CREATED),
        (acme.id, ChangeKind.UPDATED),
        (acme.id, ChangeKind.DELETED),
        (acme.id, ChangeKind.RESTORED),
    ]
    assert all(c.record_type == "company" for c in changes)
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert threading.get_ident() not in collector.threads
    assert engine.changes_since(0) == changes

    handle.unregister()
    assert not handle.is_active()
    company(engine, "Globex")
    time.sleep(0.6)
    assert len(collector.changes) == 4
    handle.unregister()  # twice is fine


def test_change_listener_sees_merges_and_survives_its_own_exceptions(workspace):
    options = OpenOptions(workspace_id=workspace, search=False)
    a = crmsync.Engine.in_memory_with(options)
    b = crmsync.Engine.in_memory_with(options)
    collector = Collector(fail_first=True)
    handle = b.register_listener(collector)
    b_own = company(b, "Own")  # delivered to a listener that raises
    deadline = time.monotonic() + 5
    while collector.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert collector.calls == 1 and collector.changes == []
    acme = company(a, "Acme")
    send(a, b, acme.id)
    changes = collector.wait_for(1)
    assert (acme.id, ChangeKind.MERGED) in [(c.id, c.kind) for c in changes]
    assert b_own.id not in [c.id for c in changes]
    handle.unregister()
    a.close_database()
    b.close_database()


def test_order_facts_and_baskets_are_the_rows_the_analytics_read(engine):
    acme = company(engine, "Acme")
    globex = company(engine, "Globex")
    bolt = engine.create("product", {"sku": text("BOLT-8"), "name": text("Bolt")})
    usd = lambda minor: Money(minor=minor, currency="USD")  # noqa: E731

    def line(price, sku=None, product=None, quantity=1):
        return OrderLine(sku=sku, product=product, quantity=quantity, unit_price=price)

    def new_order(customer, day, lines=None, total=None, status=None):
        fields = {"ordered_at": FieldValue.TIMESTAMP(value=day)}
        if customer is not None:
            fields["customer"] = FieldValue.LINK(id=customer)
        if lines is not None:
            fields["lines"] = FieldValue.LINES(lines=lines)
        if total is not None:
            fields["total"] = FieldValue.MONEY(minor=total.minor, currency=total.currency)
        if status is not None:
            fields["status"] = text(status)
        return engine.create("order", fields)

    march = dt.datetime(2025, 3, 1, 10, 30, tzinfo=UTC)
    # The total wins over the lines.
    totalled = new_order(
        acme.id, march, [line(usd(1000), "NUT", quantity=2), line(usd(500), "BOLT-8")], usd(2400)
    )
    # No total: quantity x unit price over the lines; a line linking a product is named by its
    # SKU.
    from_lines = new_order(
        globex.id,
        march + dt.timedelta(days=4),
        [line(usd(700), product=bolt.id, quantity=3), line(usd(100), "WASHER")],
    )
    # A sale without lines: a fact, but no basket.
    no_lines = new_order(None, march + dt.timedelta(days=31), total=Money(minor=999, currency="EUR"))
    # Not sales: a draft, a cancelled order, a deleted one, one without total or lines.
    new_order(acme.id, march, [line(usd(1), "DRAFTED")], usd(1), status="draft")
    new_order(acme.id, march, [line(usd(1), "CANCELLED")], usd(1), status="cancelled")
    engine.delete(new_order(acme.id, march, [line(usd(1), "GONE")], usd(1)).id)
    new_order(acme.id, march)

    facts = run(engine.order_facts())
    assert {f.order: (f.customer, f.at, f.total) for f in facts} == {
        totalled.id: (acme.id, march, usd(2400)),
        from_lines.id: (globex.id, march + dt.timedelta(days=4), usd(2200)),
        no_lines.id: (None, march + dt.timedelta(days=31), Money(minor=999, currency="EUR")),
    }
    assert all(isinstance(f, crmsync.OrderFact) for f in facts)

    baskets = run(engine.order_baskets())
    assert sorted(sorted(b) for b in baskets) == [["BOLT-8", "NUT"], ["BOLT-8", "WASHER"]]
    # The same baskets product_associations counts.
    associations = run(engine.product_associations(crmsync.AprioriOptions(min_support=0.5)))
    assert associations.baskets == len(baskets) == 2
    assert (["BOLT-8"], 2) in [(i.items, i.count) for i in associations.itemsets]

    # Lines in two currencies and no total: the facts cannot be read, and the error says why.
    mixed = new_order(
        acme.id, march, [line(usd(100), "A"), line(Money(minor=100, currency="EUR"), "B")]
    )
    with pytest.raises(CrmError.Analytics, match=f"order {mixed.id} has lines in USD and EUR"):
        run(engine.order_facts())
    # Baskets do not need prices.
    assert len(run(engine.order_baskets())) == 3


def test_search_dir_names_the_index_beside_the_database_file(tmp_path):
    path = str(tmp_path / "crm.redb")
    assert crmsync.search_dir(path) == path + ".search"
    e = crmsync.Engine.open(path)
    company(e, "Acme")
    e.close_database()
    index = tmp_path / "crm.redb.search"
    assert index.is_dir() and any(index.iterdir())
    # Deleting it is safe: the next open rebuilds it.
    import shutil

    shutil.rmtree(crmsync.search_dir(path))
    again = crmsync.Engine.open(path)
    assert [h.title for h in run(again.search("acme")).hits] == ["Acme"]
    again.close_database()
    assert index.is_dir()


# ---------------------------------------------------------------- close and reopen


def test_close_and_reopen_a_database_file(tmp_path):
    path = str(tmp_path / "crm.redb")
    first = crmsync.Engine.open(path)
    acme = company(first, "Acme", tags=FieldValue.STRINGS(values=["vip"]))
    handle = first.register_listener(Collector())
    device = first.device_id()
    with pytest.raises(CrmError.Store):
        crmsync.Engine.open(path)  # the file is in use
    first.close_database()
    first.close_database()  # twice is fine
    assert first.is_closed()
    assert not handle.is_active()  # closing stopped the listener
    with pytest.raises(CrmError.Closed, match="closed"):
        first.get(acme.id)
    with pytest.raises(CrmError.Closed):
        run(first.list(ListQuery(record_type="company")))

    again = crmsync.Engine.open(path)
    assert again.device_id() == device
    assert again.get(acme.id) == acme
    assert run(again.search("acme")).hits[0].id == acme.id
    again.close_database()


def test_open_options_refuse_a_file_of_another_workspace(tmp_path, workspace):
    path = str(tmp_path / "crm.redb")
    e = crmsync.Engine.open_with(path, OpenOptions(workspace_id=workspace))
    assert e.workspace_id() == workspace
    e.close_database()
    import uuid

    with pytest.raises(CrmError.Store, match="belongs to workspace"):
        crmsync.Engine.open_with(path, OpenOptions(workspace_id=str(uuid.uuid4())))
    with pytest.raises(CrmError.InvalidInput):
        crmsync.Engine.in_memory_with(OpenOptions(workspace_id="not-a-uuid"))
