//! Process values: what the points of each device hold (from the answers to reads) and
//! what was written into them, by whom. Counted in the core so that steady polling costs
//! one lookup and one comparison per answer; Python reads the table at the end.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::decode::Addr;
use crate::events::{nth_address, Points, Proto};
use crate::meaning::Table;

/// A point: device, protocol, unit (Modbus unit id, DNP3 outstation), table, address.
pub type PointKey = (Addr, Proto, u32, Table, u32);

/// Blocks (one poll's points) and written points tracked; beyond, counted as untracked.
pub const MAX_BLOCKS: usize = 8_192;
pub const MAX_WRITTEN: usize = 65_536;
/// Writers remembered per point (more are counted together).
pub const MAX_WRITERS: usize = 8;
/// The last values kept per point that changed or was written (a sparkline's worth), and
/// the points that keep them.
pub const HISTORY: usize = 32;
pub const MAX_HISTORIES: usize = 4_096;

/// A block: device, protocol, unit, table, start, step, number of points.
type BlockKey = (Addr, Proto, u32, Table, u32, u32, u32);

/// The points one kind of read returns again and again.
struct Block {
    last: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    changes: Vec<u32>,
    reads: u64,
    last_ts: f64,
}

impl Block {
    /// What was read of its `i`-th point.
    fn read(&self, i: usize) -> Read {
        Read {
            reads: self.reads,
            last: self.last[i],
            min: self.min[i],
            max: self.max[i],
            changes: self.changes[i] as u64,
            last_ts: self.last_ts,
        }
    }
}

/// What was written into one point.
#[derive(Clone, Debug)]
pub struct Written {
    pub writes: u64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub last_ts: f64,
    /// (writer, writes), at most `MAX_WRITERS`; `other_writes` counts the rest
    pub writers: Vec<(Addr, u64)>,
    pub other_writes: u64,
}

/// What was read from one point.
#[derive(Clone, Copy, Debug)]
pub struct Read {
    pub reads: u64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub changes: u64,
    pub last_ts: f64,
}

/// One point as reported: its reads and its writes (either may be absent).
pub struct Row {
    pub key: PointKey,
    pub read: Option<Read>,
    pub written: Option<Written>,
}

/// The last values of a point that changed or was written: (time, value), oldest first.
pub type History = VecDeque<(f64, f64)>;

#[derive(Default)]
pub struct Values {
    blocks: FxHashMap<BlockKey, Block>,
    written: FxHashMap<PointKey, Written>,
    histories: FxHashMap<PointKey, History>,
    /// answers and written values not tracked because the tables were full
    pub untracked: u64,
}

impl Values {
    /// Values a device reported in an answer.
    pub fn read(&mut self, device: Addr, proto: Proto, unit: u32, points: &[Points], ts: f64) {
        for p in points {
            let len = p.values.len() as u32;
            let key = (device, proto, unit, p.table, p.start, p.step, len);
            if let Some(b) = self.blocks.get_mut(&key) {
                let before = b.last_ts;
                b.reads += 1;
                b.last_ts = ts;
                if b.last != p.values {
                    let mut changed = Vec::new();
                    for (i, &v) in p.values.iter().enumerate() {
                        if b.last[i] != v {
                            changed.push((i, b.last[i], v));
                            b.changes[i] += 1;
                            b.last[i] = v;
                            b.min[i] = b.min[i].min(v);
                            b.max[i] = b.max[i].max(v);
                        }
                    }
                    for (i, old, v) in changed {
                        let point = (device, proto, unit, p.table, p.address(i));
                        self.remember(point, Some((before, old)), ts, v);
                    }
                }
            } else if self.blocks.len() < MAX_BLOCKS {
                let n = p.values.len();
                self.blocks.insert(
                    key,
                    Block {
                        last: p.values.clone(),
                        min: p.values.clone(),
                        max: p.values.clone(),
                        changes: vec![0; n],
                        reads: 1,
                        last_ts: ts,
                    },
                );
            } else {
                self.untracked += 1;
            }
        }
    }

    /// Values a request wrote into a device.
    pub fn write(
        &mut self,
        device: Addr,
        proto: Proto,
        unit: u32,
        writer: Addr,
        points: &[Points],
        ts: f64,
    ) {
        for p in points {
            for (i, &v) in p.values.iter().enumerate() {
                let key = (device, proto, unit, p.table, p.address(i));
                if self.written.len() >= MAX_WRITTEN && !self.written.contains_key(&key) {
                    self.untracked += 1;
                    continue;
                }
                let w = self.written.entry(key).or_insert(Written {
                    writes: 0,
                    last: v,
                    min: v,
                    max: v,
                    last_ts: ts,
                    writers: Vec::new(),
                    other_writes: 0,
                });
                let before = (w.writes > 0).then_some((w.last_ts, w.last));
                w.writes += 1;
                w.last = v;
                w.min = w.min.min(v);
                w.max = w.max.max(v);
                w.last_ts = ts;
                if let Some(i) = w.writers.iter().position(|(a, _)| *a == writer) {
                    w.writers[i].1 += 1;
                } else if w.writers.len() < MAX_WRITERS {
                    w.writers.push((writer, 1));
                } else {
                    w.other_writes += 1;
                }
                self.remember(key, before, ts, v);
            }
        }
    }

    /// Keep a value of a point in its history (`before`: the value it had, when the
    /// history starts with this one).
    fn remember(&mut self, key: PointKey, before: Option<(f64, f64)>, ts: f64, v: f64) {
        let full = self.histories.len() >= MAX_HISTORIES;
        let h = match self.histories.get_mut(&key) {
            Some(h) => h,
            None if full => return,
            None => self.histories.entry(key).or_default(),
        };
        if h.is_empty() {
            h.extend(before);
        }
        h.push_back((ts, v));
        while h.len() > HISTORY {
            h.pop_front();
        }
    }

    /// The last values of a point that changed or was written (empty for the others).
    pub fn history(&self, key: &PointKey) -> Option<&History> {
        self.histories.get(key)
    }

    /// The number of points, and the rows of those written or changed (reads of
    /// overlapping blocks folded together), in key order: without a row per idle point.
    pub fn telling(&self) -> (usize, Vec<Row>) {
        type Group<'a> = Vec<(u32, u32, &'a Block)>; // (start, step, block)
        let mut groups: FxHashMap<(Addr, Proto, u32, Table), Group> = FxHashMap::default();
        for (&(device, proto, unit, table, start, step, _), b) in &self.blocks {
            groups
                .entry((device, proto, unit, table))
                .or_default()
                .push((start, step, b));
        }
        let at = |start: u32, step: u32, b: &Block, address: u32| -> Option<usize> {
            let off = address.checked_sub(start)?;
            let i = (off % step.max(1) == 0).then_some((off / step.max(1)) as usize)?;
            (i < b.last.len()).then_some(i)
        };
        let mut total = 0;
        let mut keys: Vec<PointKey> = Vec::new();
        for (&(device, proto, unit, table), blocks) in &groups {
            let mut addresses: Vec<u32> = blocks
                .iter()
                .flat_map(|&(start, step, b)| {
                    (0..b.last.len()).map(move |i| nth_address(start, step, i))
                })
                .collect();
            addresses.sort_unstable();
            addresses.dedup();
            total += addresses.len();
            for &(start, step, b) in blocks {
                for (i, &n) in b.changes.iter().enumerate() {
                    if n > 0 {
                        keys.push((device, proto, unit, table, nth_address(start, step, i)));
                    }
                }
            }
        }
        for &key in self.written.keys() {
            let (device, proto, unit, table, address) = key;
            let covered = groups
                .get(&(device, proto, unit, table))
                .is_some_and(|blocks| {
                    blocks
                        .iter()
                        .any(|&(start, step, b)| at(start, step, b, address).is_some())
                });
            total += usize::from(!covered);
            keys.push(key);
        }
        keys.sort_unstable();
        keys.dedup();
        let rows = keys
            .into_iter()
            .map(|key| {
                let (device, proto, unit, table, address) = key;
                let mut read: Option<Read> = None;
                for &(start, step, b) in groups
                    .get(&(device, proto, unit, table))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let Some(i) = at(start, step, b, address) else {
                        continue;
                    };
                    let here = b.read(i);
                    read = Some(match read {
                        None => here,
                        Some(r) => fold(r, here),
                    });
                }
                Row {
                    key,
                    read,
                    written: self.written.get(&key).cloned(),
                }
            })
            .collect();
        (total, rows)
    }

    /// Every point, reads of overlapping blocks folded together, in key order.
    pub fn rows(&self) -> Vec<Row> {
        let mut blocks: Vec<_> = self.blocks.iter().collect();
        blocks.sort_unstable_by_key(|(k, _)| **k);
        let mut rows = Vec::with_capacity(blocks.iter().map(|(_, b)| b.last.len()).sum());
        for (&(device, proto, unit, table, start, step, _), b) in blocks {
            for i in 0..b.last.len() {
                rows.push(Row {
                    key: (device, proto, unit, table, nth_address(start, step, i)),
                    read: Some(b.read(i)),
                    written: None,
                });
            }
        }
        rows.sort_by_key(|r| r.key); // in order but where blocks overlap: cheap
        rows.dedup_by(|later, kept| {
            if later.key != kept.key {
                return false;
            }
            if let (Some(r), Some(here)) = (kept.read, later.read) {
                kept.read = Some(fold(r, here));
            }
            true
        });
        if self.written.is_empty() {
            return rows;
        }
        let mut only_written = Vec::new();
        for (key, w) in &self.written {
            match rows.binary_search_by_key(key, |r| r.key) {
                Ok(i) => rows[i].written = Some(w.clone()),
                Err(_) => only_written.push(Row {
                    key: *key,
                    read: None,
                    written: Some(w.clone()),
                }),
            }
        }
        rows.extend(only_written);
        rows.sort_by_key(|r| r.key);
        rows
    }
}

/// The reads of one point seen in two blocks (polls that overlap), as one.
fn fold(mut r: Read, here: Read) -> Read {
    r.reads += here.reads;
    r.changes += here.changes;
    r.min = r.min.min(here.min);
    r.max = r.max.max(here.max);
    if here.last_ts > r.last_ts {
        r.last = here.last;
        r.last_ts = here.last_ts;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(start: u32, values: &[f64]) -> Vec<Points> {
        vec![Points {
            table: Table::Modbus("holding_registers"),
            start,
            step: 1,
            values: values.to_vec(),
        }]
    }

    #[test]
    fn steady_reads_count_changes_only_when_values_move() {
        let dev = Addr::new(&[10, 0, 0, 1]);
        let mut v = Values::default();
        v.read(dev, Proto::Modbus, 1, &pts(100, &[40.0, 7.0]), 1.0);
        v.read(dev, Proto::Modbus, 1, &pts(100, &[40.0, 7.0]), 2.0);
        v.read(dev, Proto::Modbus, 1, &pts(100, &[55.0, 7.0]), 3.0);
        v.read(dev, Proto::Modbus, 1, &pts(101, &[9.0]), 4.0); // overlapping block
        let rows = v.rows();
        assert_eq!(rows.len(), 2);
        let r = rows[0].read.unwrap();
        assert_eq!(
            (rows[0].key.4, r.reads, r.last, r.min, r.max, r.changes),
            (100, 3, 55.0, 40.0, 55.0, 1)
        );
        let r = rows[1].read.unwrap();
        assert_eq!(
            (rows[1].key.4, r.reads, r.last, r.min, r.max),
            (101, 4, 9.0, 7.0, 9.0)
        );
    }

    #[test]
    fn writes_keep_writers_and_range() {
        let dev = Addr::new(&[10, 0, 0, 1]);
        let (a, b) = (Addr::new(&[10, 0, 0, 2]), Addr::new(&[10, 0, 0, 3]));
        let mut v = Values::default();
        v.write(dev, Proto::Modbus, 1, a, &pts(7, &[50.0]), 1.0);
        v.write(dev, Proto::Modbus, 1, b, &pts(7, &[950.0]), 2.0);
        v.write(dev, Proto::Modbus, 1, a, &pts(7, &[45.0]), 3.0);
        let rows = v.rows();
        assert_eq!(rows.len(), 1);
        let w = rows[0].written.as_ref().unwrap();
        assert!(rows[0].read.is_none());
        assert_eq!(v.telling().0, 1);
        assert_eq!((w.writes, w.last, w.min, w.max), (3, 45.0, 45.0, 950.0));
        assert_eq!(w.writers, vec![(a, 2), (b, 1)]);
        let h: Vec<_> = v.history(&rows[0].key).unwrap().iter().copied().collect();
        assert_eq!(h, vec![(1.0, 50.0), (2.0, 950.0), (3.0, 45.0)]);
    }
}
