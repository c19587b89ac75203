//! Deterministic CRM data for the benchmark: the same companies and contacts, in the same
//! order, for crmsync and for the SQLite baseline.

use crmsync::{NewRecord, RecordId, RecordType, Value};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

const FIRST: [&str; 26] = [
    "Alice", "Bob", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi",
    "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma",
    "Victor", "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST: [&str; 20] = [
    "Smith", "Garcia", "Nguyen", "Okafor", "Schmidt", "Rossi", "Kowalski", "Tanaka", "Silva",
    "Dubois", "Haddad", "Jensen", "Novak", "Patel", "Lopez", "Kim", "Murphy", "Berg", "Costa",
    "Fischer",
];
const ADJECTIVES: [&str; 12] = [
    "Blue", "Northern", "Bright", "Silver", "Rapid", "Green", "Atlas", "Summit", "Coastal",
    "Prime", "Urban", "Golden",
];
const NOUNS: [&str; 12] = [
    "Harbor",
    "Robotics",
    "Foods",
    "Logistics",
    "Analytics",
    "Textiles",
    "Energy",
    "Health",
    "Media",
    "Metals",
    "Software",
    "Travel",
];
const INDUSTRIES: [&str; 10] = [
    "manufacturing",
    "retail",
    "software",
    "logistics",
    "healthcare",
    "energy",
    "finance",
    "media",
    "education",
    "hospitality",
];
const TITLES: [&str; 10] = [
    "CEO",
    "CTO",
    "Head of Sales",
    "Buyer",
    "Account Manager",
    "Engineer",
    "Office Manager",
    "CFO",
    "Marketing Lead",
    "Operations Director",
];
const LIFECYCLES: [&str; 4] = ["lead", "prospect", "customer", "churned"];
const OWNERS: [&str; 8] = [
    "ana", "ben", "chen", "dora", "emil", "fatima", "goran", "hana",
];
const TAGS: [&str; 12] = [
    "vip",
    "newsletter",
    "trade-fair",
    "partner",
    "q1",
    "q2",
    "q3",
    "q4",
    "renewal",
    "upsell",
    "inbound",
    "outbound",
];

/// A generated company.
pub struct Company {
    name: String,
    domain: String,
    industry: &'static str,
    employees: i64,
    phone: String,
    owner: &'static str,
    tags: Vec<String>,
}

/// A generated contact; `company` indexes the companies in creation order.
pub struct Contact {
    first: &'static str,
    last: &'static str,
    emails: Vec<String>,
    phones: Vec<String>,
    title: &'static str,
    lifecycle: &'static str,
    owner: &'static str,
    tags: Vec<String>,
    company: usize,
}

/// One generated record.
pub enum Spec {
    Company(Company),
    Contact(Contact),
}

/// Produces `n` records: ~20% companies first, then contacts linked to them.
pub struct Generator {
    rng: StdRng,
    companies: usize,
    contacts: usize,
    made_companies: usize,
    made_contacts: usize,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn domain(company: usize) -> String {
    let noun = NOUNS[company % NOUNS.len()].to_ascii_lowercase();
    format!("{noun}{company}.example.com")
}

impl Generator {
    pub fn new(n: usize, seed: u64) -> Self {
        let companies = (n / 5).max(1);
        Self {
            rng: StdRng::seed_from_u64(seed),
            companies,
            contacts: n.saturating_sub(companies),
            made_companies: 0,
            made_contacts: 0,
        }
    }

    pub fn company_count(&self) -> usize {
        self.companies
    }

    fn phone(&mut self) -> String {
        let a = self.rng.random_range(100..1000);
        let b = self.rng.random_range(0..10_000);
        format!("+1 555 {a:03} {b:04}")
    }

    fn tags(&mut self) -> Vec<String> {
        let n = self.rng.random_range(0..=3);
        let mut tags: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let t = pick(&mut self.rng, &TAGS).to_string();
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        tags
    }

    fn company(&mut self) -> Company {
        let i = self.made_companies;
        self.made_companies += 1;
        let adjective = pick(&mut self.rng, &ADJECTIVES);
        Company {
            name: format!("{adjective} {} {i}", NOUNS[i % NOUNS.len()]),
            domain: domain(i),
            industry: pick(&mut self.rng, &INDUSTRIES),
            employees: self.rng.random_range(1..50_000),
            phone: self.phone(),
            owner: pick(&mut self.rng, &OWNERS),
            tags: self.tags(),
        }
    }

    /// A contact (also used for the single-create phase, beyond the `n` imported records).
    pub fn contact(&mut self) -> Contact {
        let i = self.made_contacts;
        self.made_contacts += 1;
        let first = pick(&mut self.rng, &FIRST);
        let last = pick(&mut self.rng, &LAST);
        let company = self.rng.random_range(0..self.companies);
        let local = format!("{}.{}{i}", first.to_lowercase(), last.to_lowercase());
        let mut emails = vec![format!("{local}@{}", domain(company))];
        if self.rng.random_bool(0.3) {
            emails.push(format!("{local}@mail.example.org"));
        }
        let phones = (0..self.rng.random_range(0..=2))
            .map(|_| self.phone())
            .collect();
        Contact {
            first,
            last,
            emails,
            phones,
            title: pick(&mut self.rng, &TITLES),
            lifecycle: pick(&mut self.rng, &LIFECYCLES),
            owner: pick(&mut self.rng, &OWNERS),
            tags: self.tags(),
            company,
        }
    }

    /// The next chunk of at most `max` records; companies and contacts are never mixed in a
    /// chunk, so contacts can link to companies whose ids are already known.
    pub fn next_chunk(&mut self, max: usize) -> Option<Vec<Spec>> {
        if self.made_companies < self.companies {
            let n = max.min(self.companies - self.made_companies);
            return Some((0..n).map(|_| Spec::Company(self.company())).collect());
        }
        if self.made_contacts < self.contacts {
            let n = max.min(self.contacts - self.made_contacts);
            return Some((0..n).map(|_| Spec::Contact(self.contact())).collect());
        }
        None
    }
}

fn list(items: &[String]) -> Value {
    Value::List(items.to_vec())
}

impl Spec {
    pub fn is_company(&self) -> bool {
        matches!(self, Spec::Company(_))
    }

    /// The record for crmsync; `companies` are the ids of the companies created so far.
    pub fn to_new_record(&self, companies: &[RecordId]) -> NewRecord {
        match self {
            Spec::Company(c) => NewRecord::new(RecordType::Company)
                .with("name", c.name.as_str())
                .with("domain", c.domain.as_str())
                .with("industry", c.industry)
                .with("employee_count", Value::Int(c.employees))
                .with("phone", c.phone.as_str())
                .with("owner", c.owner)
                .with("tags", list(&c.tags)),
            Spec::Contact(c) => c.to_new_record(companies),
        }
    }

    /// (type, JSON document) for SQLite.
    pub fn to_json(&self, companies: &[RecordId], now_ms: i64) -> (&'static str, String) {
        match self {
            Spec::Company(c) => {
                let doc = json!({
                    "type": "company",
                    "fields": {
                        "name": c.name, "domain": c.domain, "industry": c.industry,
                        "employee_count": c.employees, "phone": c.phone, "owner": c.owner,
                        "tags": c.tags,
                    },
                    "created_at": now_ms, "updated_at": now_ms,
                });
                ("company", doc.to_string())
            }
            Spec::Contact(c) => ("contact", c.to_json(companies, now_ms)),
        }
    }
}

impl Contact {
    pub fn to_new_record(&self, companies: &[RecordId]) -> NewRecord {
        NewRecord::new(RecordType::Contact)
            .with("first_name", self.first)
            .with("last_name", self.last)
            .with("emails", list(&self.emails))
            .with("phones", list(&self.phones))
            .with("title", self.title)
            .with("lifecycle", self.lifecycle)
            .with("owner", self.owner)
            .with("tags", list(&self.tags))
            .with("company", Value::Link(companies[self.company]))
    }

    pub fn to_json(&self, companies: &[RecordId], now_ms: i64) -> String {
        json!({
            "type": "contact",
            "fields": {
                "first_name": self.first, "last_name": self.last, "emails": self.emails,
                "phones": self.phones, "title": self.title, "lifecycle": self.lifecycle,
                "owner": self.owner, "tags": self.tags,
                "company": companies[self.company].to_string(),
            },
            "created_at": now_ms, "updated_at": now_ms,
        })
        .to_string()
    }
}
