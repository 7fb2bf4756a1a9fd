//! Where the matcher finds the rules that may match a record: by protocol, anomaly or not,
//! direction and function code, then by the value of one field each rule tests for
//! equality (the unit, address, SZL or link address that large generated rule sets differ
//! by). A record meets the rules that can match it, not every rule of its function: the
//! cost of a record grows with the rules it may match, not with the rule set.

use rustc_hash::FxHashMap;

use crate::events::Proto;
use crate::rules::{Op, Val, CONTEXT_BASE};

/// Where a rule is indexed: (protocol, anomaly record?, request?).
pub type Slot = (Proto, bool, bool);

/// A slot and a function code (None: the rules that name none).
pub type Place = (Slot, Option<i64>);

/// An equality a rule tests: a field and the values it may hold (one for `eq`, the list
/// for `in`).
pub type Key = (u8, Vec<Val>);

#[derive(Default)]
struct Bucket {
    /// found whatever the record's values
    any: Vec<u32>,
    /// the fields some rules here are found by, and those rules per value
    fields: Vec<u8>,
    by_value: FxHashMap<(u8, Val), Vec<u32>>,
}

#[derive(Default)]
pub struct Index {
    buckets: FxHashMap<Place, Bucket>,
}

/// The equalities of a rule's conditions the index can find it by.
pub fn keys(conditions: &[(u8, Op, Val)]) -> Vec<Key> {
    let scalar = |v: &Val| matches!(v, Val::Int(_) | Val::Sym(_) | Val::Str(_));
    conditions
        .iter()
        .filter(|(id, _, _)| *id < CONTEXT_BASE)
        .filter_map(|(id, op, want)| match (op, want) {
            (Op::Eq, v) if scalar(v) => Some((*id, vec![v.clone()])),
            (Op::In, Val::List(l)) if !l.is_empty() && l.iter().all(scalar) => {
                Some((*id, l.clone()))
            }
            _ => None,
        })
        .collect()
}

impl Index {
    /// The index of rules, each given as (rule, its places, its keys): each rule is found
    /// by the key whose values the fewest other rules of its place share.
    pub fn build(rules: Vec<(u32, Vec<Place>, Vec<Key>)>) -> Index {
        let mut shared: FxHashMap<(Place, u8, &Val), u32> = FxHashMap::default();
        for (_, places, keys) in &rules {
            for place in places {
                for (field, values) in keys {
                    for v in values {
                        *shared.entry((*place, *field, v)).or_default() += 1;
                    }
                }
            }
        }
        let mut out = Index::default();
        for (rule, places, keys) in &rules {
            for place in places {
                let bucket = out.buckets.entry(*place).or_default();
                let best = keys.iter().min_by_key(|(field, values)| {
                    values
                        .iter()
                        .map(|v| shared[&(*place, *field, v)])
                        .sum::<u32>()
                });
                let Some((field, values)) = best else {
                    bucket.any.push(*rule);
                    continue;
                };
                if !bucket.fields.contains(field) {
                    bucket.fields.push(*field);
                }
                for v in values {
                    let found = bucket.by_value.entry((*field, v.clone())).or_default();
                    if found.last() != Some(rule) {
                        found.push(*rule);
                    }
                }
            }
        }
        out
    }

    /// Add the rules of `place` a record may match to `out`, in rule order; `value` gives
    /// the record's value of a field.
    pub fn candidates(&self, place: Place, value: &dyn Fn(u8) -> Val, out: &mut Vec<u32>) {
        let Some(b) = self.buckets.get(&place) else {
            return;
        };
        let start = out.len();
        out.extend_from_slice(&b.any);
        for &field in &b.fields {
            if let Some(rules) = b.by_value.get(&(field, value(field))) {
                out.extend_from_slice(rules);
            }
        }
        if !b.fields.is_empty() {
            out[start..].sort_unstable();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::f;

    #[test]
    fn a_rule_is_found_by_its_rarest_equality() {
        let slot = (Proto::Modbus, false, true);
        let place = (slot, Some(6));
        // rules 0..100 write one address each of unit 1; rule 100 any write; rule 101 a
        // range of addresses (no equality)
        let mut rules: Vec<(u32, Vec<Place>, Vec<Key>)> = (0..100)
            .map(|i| {
                let keys = vec![
                    (f::UNIT_ID, vec![Val::Int(1)]),
                    (f::ADDRESS, vec![Val::Int(i), Val::Int(1000 + i)]),
                ];
                (i as u32, vec![place], keys)
            })
            .collect();
        rules.push((100, vec![place], vec![]));
        rules.push((101, vec![place, (slot, None)], vec![]));
        let index = Index::build(rules);
        let mut out = Vec::new();
        let record = |address: i64| {
            move |field: u8| match field {
                f::ADDRESS => Val::Int(address),
                f::UNIT_ID => Val::Int(1),
                _ => Val::None,
            }
        };
        index.candidates(place, &record(1042), &mut out);
        assert_eq!(out, vec![42, 100, 101]);
        out.clear();
        index.candidates(place, &record(5000), &mut out);
        assert_eq!(out, vec![100, 101]);
        index.candidates((slot, None), &record(42), &mut out);
        assert_eq!(out, vec![100, 101, 101]);
        index.candidates(((Proto::Dnp3, false, true), None), &record(42), &mut out);
        assert_eq!(out.len(), 3);
    }

    proptest::proptest! {
        /// Every rule whose equalities a record meets is among its candidates, once.
        #[test]
        fn no_rule_that_can_match_is_missed(
            rules in proptest::collection::vec(
                proptest::collection::vec((0u8..3, proptest::collection::vec(0i64..6, 1..3)), 0..3),
                0..40),
            record in proptest::collection::vec(0i64..6, 3),
        ) {
            let slot = (Proto::Modbus, false, true);
            let place = (slot, None);
            let index = Index::build(rules.iter().enumerate().map(|(i, keys)| {
                let keys = keys.iter().map(|(f, v)| (*f, v.iter().map(|&x| Val::Int(x)).collect())).collect();
                (i as u32, vec![place], keys)
            }).collect());
            let mut out = Vec::new();
            index.candidates(place, &|f: u8| Val::Int(record[f as usize]), &mut out);
            let mut once = out.clone();
            once.dedup();
            proptest::prop_assert_eq!(&once, &out);
            for (i, keys) in rules.iter().enumerate() {
                let meets = keys.iter().all(|(f, v)| v.contains(&record[*f as usize]));
                if meets {
                    proptest::prop_assert!(out.contains(&(i as u32)), "rule {} missed", i);
                }
            }
        }
    }
}
