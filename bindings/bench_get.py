"""Per-call overhead of `Engine.get` through the Python bindings versus the same call in Rust.

Builds the same data as `examples/get_overhead.rs` (1,000 companies and 1,000 contacts linked to
them, in memory), times `get` of the contacts in rounds, runs the Rust example for its median,
and prints both with the ratio. Run through `bindings/bench.sh`, which builds both in release.

Usage: python bench_get.py RUST_EXAMPLE_BINARY
"""

import statistics
import subprocess
import sys
import time

import crmsync
from crmsync import FieldValue, Money

COMPANIES = 1_000
ROUNDS = 51
CALLS_PER_ROUND = 2_000


def text(s):
    return FieldValue.TEXT(value=s)


def build(engine):
    contacts = []
    for i in range(COMPANIES):
        company = engine.create(
            "company",
            {
                "name": text(f"Company {i}"),
                "domain": text(f"company{i}.example"),
                "industry": text("Retail"),
                "employee_count": FieldValue.INT(value=50 + i),
                "annual_revenue": FieldValue.MONEY(minor=1_250_000 + i, currency="USD"),
            },
        )
        contact = engine.create(
            "contact",
            {
                "first_name": text(f"Ada {i}"),
                "last_name": text("Lovelace"),
                "emails": FieldValue.STRINGS(values=[f"ada{i}@company{i}.example"]),
                "phones": FieldValue.STRINGS(values=["+1 555 0100"]),
                "company": FieldValue.LINK(id=company.id),
                "lifecycle": text("customer"),
                "tags": FieldValue.STRINGS(values=["vip", "q3"]),
            },
        )
        contacts.append(contact.id)
    return contacts


def python_median_ns(engine, contacts):
    for record_id in contacts:
        assert engine.get(record_id) is not None
    per_call = []
    get = engine.get
    n = len(contacts)
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for i in range(CALLS_PER_ROUND):
            get(contacts[i % n])
        per_call.append((time.perf_counter_ns() - start) / CALLS_PER_ROUND)
    return statistics.median(per_call)


def python_call_floor_ns(engine):
    """A call with no argument and a bool result: the fixed cost of any call from Python."""
    per_call = []
    is_closed = engine.is_closed
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(CALLS_PER_ROUND):
            is_closed()
        per_call.append((time.perf_counter_ns() - start) / CALLS_PER_ROUND)
    return statistics.median(per_call)


def rust_median_ns(binary):
    out = subprocess.run([binary], check=True, capture_output=True, text=True).stdout
    fields = out.split()
    assert fields[0] == "rust_get_ns", out
    return float(fields[1])


def main():
    engine = crmsync.Engine.in_memory()
    contacts = build(engine)
    python_ns = python_median_ns(engine, contacts)
    floor_ns = python_call_floor_ns(engine)
    engine.close_database()
    rust_ns = rust_median_ns(sys.argv[1])
    print(f"get, Rust (crmsync::Engine::get):        median {rust_ns / 1000:8.2f} us/call")
    print(f"get, Python (uniffi bindings, same data): median {python_ns / 1000:8.2f} us/call")
    print(f"is_closed, Python (fixed cost of a call):  median {floor_ns / 1000:8.2f} us/call")
    print(
        f"ratio Python/Rust: {python_ns / rust_ns:.1f}x; "
        f"FFI + Python overhead: {(python_ns - rust_ns) / 1000:.2f} us/call "
        f"({COMPANIES} contacts with 7 fields, {ROUNDS} rounds of {CALLS_PER_ROUND} calls)"
    )


if __name__ == "__main__":
    main()
