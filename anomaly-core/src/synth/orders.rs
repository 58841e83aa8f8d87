//! Synthetic e-commerce orders with a few clearly unusual ones, for the record (GraphQL plug-in) case.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::event::rfc3339_millis;
use super::sample::{normal, pick, round_to, uniform};

/// Countries of normal customers, with their shares and currencies.
const COUNTRIES: &[(&str, f64, &str)] = &[
    ("US", 0.35, "USD"),
    ("GB", 0.15, "GBP"),
    ("DE", 0.15, "EUR"),
    ("FR", 0.10, "EUR"),
    ("NL", 0.08, "EUR"),
    ("ES", 0.07, "EUR"),
    ("CA", 0.10, "CAD"),
];
/// Customer tiers, with their shares.
const TIERS: &[(&str, f64)] = &[("standard", 0.7), ("gold", 0.2), ("platinum", 0.1)];
/// Order statuses, with their shares.
const STATUSES: &[(&str, f64)] = &[("paid", 0.75), ("shipped", 0.2), ("refunded", 0.05)];
/// 2024-03-01T00:00:00Z: orders are spread over the 30 days from here.
const FIRST_DAY: f64 = 1_709_251_200.0;

/// The kinds of planted anomaly, used in turn.
#[derive(Debug, Clone, Copy)]
enum Unusual {
    HugeAmount,
    RareCountry,
    DiscountAboveAmount,
    NegativeQuantity,
    OddHour,
}

const UNUSUAL: [Unusual; 5] = [
    Unusual::HugeAmount,
    Unusual::RareCountry,
    Unusual::DiscountAboveAmount,
    Unusual::NegativeQuantity,
    Unusual::OddHour,
];

/// `n` order records, `anomalies` of them (at most `n`) clearly unusual, each paired with whether it is one.
///
/// A record looks like
/// `{"id": "ord-000001", "customer": {"id": "cust-00042", "country": "DE", "tier": "gold"}, "amount": 83.4,
/// "currency": "EUR", "items": [2, 1], "status": "paid", "created_at": "2024-03-07T13:21:08.000Z",
/// "discount": 4.17, "express": false}`, where `items` holds the quantity of each line.
///
/// Normal records: 1–4 lines of 1–3 items at 2–150 per item (so `amount` stays below 1,800), one of seven countries
/// with its currency, discounts only for gold (5 %, half the time) and platinum (10 %) customers, created between
/// 08:00 and 22:00 UTC. The anomalies take turns among: a huge amount (5,000–50,000), a country no normal customer
/// has (`AQ`), a discount above the amount, a negative quantity, and an order created between 02:00 and 05:00.
/// Their positions are drawn at random; the result is reproducible for a seed.
pub fn orders(seed: u64, n: usize, anomalies: usize) -> Vec<(Value, bool)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = anomalies.min(n);
    let mut unusual = vec![None; n];
    let mut positions = index::sample(&mut rng, n, k).into_vec();
    positions.sort_unstable();
    for (turn, &i) in positions.iter().enumerate() {
        unusual[i] = Some(UNUSUAL[turn % UNUSUAL.len()]);
    }
    let customers = (n / 4).max(50);
    unusual
        .into_iter()
        .enumerate()
        .map(|(i, u)| (order(&mut rng, i, customers, u), u.is_some()))
        .collect()
}

fn order(rng: &mut ChaCha8Rng, i: usize, customers: usize, unusual: Option<Unusual>) -> Value {
    let customer = rng.random_range(1..=customers);
    let (mut country, _, mut currency) =
        COUNTRIES[pick(uniform(rng), &shares(COUNTRIES.iter().map(|c| c.1)))];
    let tier = TIERS[pick(uniform(rng), &shares(TIERS.iter().map(|t| t.1)))].0;
    let status = STATUSES[pick(uniform(rng), &shares(STATUSES.iter().map(|s| s.1)))].0;
    let lines = rng.random_range(1..=4usize);
    let mut items: Vec<i64> = Vec::with_capacity(lines);
    let mut amount = 0.0;
    for _ in 0..lines {
        let quantity = pick(uniform(rng), &[0.6, 0.3, 0.1]) as i64 + 1;
        let price = round_to((25.0 * (0.5 * normal(rng)).exp()).clamp(2.0, 150.0), 2);
        items.push(quantity);
        amount += quantity as f64 * price;
    }
    let mut amount = round_to(amount, 2);
    let mut discount = match tier {
        "gold" if rng.random_bool(0.5) => round_to(amount * 0.05, 2),
        "platinum" => round_to(amount * 0.10, 2),
        _ => 0.0,
    };
    let day = rng.random_range(0..30u32) as f64;
    let mut second_of_day = rng.random_range(8 * 3600..22 * 3600u32) as f64;
    let express = rng.random_bool(if tier == "platinum" { 0.5 } else { 0.15 });
    match unusual {
        None => {}
        Some(Unusual::HugeAmount) => amount = round_to(rng.random_range(5_000.0..50_000.0), 2),
        Some(Unusual::RareCountry) => (country, currency) = ("AQ", "USD"),
        Some(Unusual::DiscountAboveAmount) => {
            discount = round_to(amount * rng.random_range(1.5..3.0), 2)
        }
        Some(Unusual::NegativeQuantity) => {
            let line = rng.random_range(0..items.len());
            items[line] = -rng.random_range(1..=5i64);
        }
        Some(Unusual::OddHour) => second_of_day = rng.random_range(2 * 3600..5 * 3600u32) as f64,
    }
    json!({
        "id": format!("ord-{:06}", i + 1),
        "customer": {"id": format!("cust-{customer:05}"), "country": country, "tier": tier},
        "amount": amount,
        "currency": currency,
        "items": items,
        "status": status,
        "created_at": rfc3339_millis(FIRST_DAY + day * 86_400.0 + second_of_day),
        "discount": discount,
        "express": express,
    })
}

fn shares(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    weights.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::kind::parse_moment;

    /// Whether an order breaks one of the rules every normal order follows.
    fn clearly_unusual(o: &Value) -> bool {
        let amount = o["amount"].as_f64().unwrap();
        let discount = o["discount"].as_f64().unwrap();
        let country = o["customer"]["country"].as_str().unwrap();
        let items = o["items"].as_array().unwrap();
        let hour = parse_moment(o["created_at"].as_str().unwrap())
            .unwrap()
            .hour;
        amount > 2_000.0
            || !COUNTRIES.iter().any(|c| c.0 == country)
            || discount > amount
            || items.iter().any(|q| q.as_i64().unwrap() < 0)
            || !(8.0..22.0).contains(&hour)
    }

    #[test]
    fn labels_match_the_planted_anomalies() {
        let data = orders(3, 1_000, 25);
        assert_eq!(data.len(), 1_000);
        assert_eq!(data.iter().filter(|(_, a)| *a).count(), 25);
        for (o, anomalous) in &data {
            assert_eq!(clearly_unusual(o), *anomalous, "{o}");
        }
        assert_eq!(data[0].0["id"], "ord-000001");
    }

    #[test]
    fn normal_orders_are_consistent() {
        for (o, _) in orders(5, 500, 0) {
            let amount = o["amount"].as_f64().unwrap();
            assert!(amount > 0.0 && amount < 1_800.0);
            let country = o["customer"]["country"].as_str().unwrap();
            let currency = COUNTRIES.iter().find(|c| c.0 == country).unwrap().2;
            assert_eq!(o["currency"], currency);
            let items = o["items"].as_array().unwrap();
            assert!((1..=4).contains(&items.len()));
            assert!(items.iter().all(|q| (1..=3).contains(&q.as_i64().unwrap())));
            let tier = o["customer"]["tier"].as_str().unwrap();
            if tier == "standard" {
                assert_eq!(o["discount"], 0.0);
            }
        }
    }

    #[test]
    fn deterministic_and_clamped() {
        assert_eq!(orders(9, 200, 10), orders(9, 200, 10));
        assert_ne!(orders(9, 200, 10), orders(10, 200, 10));
        let all = orders(1, 7, 100);
        assert!(all.iter().all(|(_, a)| *a));
        assert!(orders(1, 0, 3).is_empty());
    }
}
