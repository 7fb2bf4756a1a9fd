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
    /// the rest of each point's figures, together: a poll whose values all move touches
    /// two arrays, not five
    stats: Vec<Stat>,
    reads: u64,
    last_ts: f64,
}

#[derive(Clone, Copy)]
struct Stat {
    min: f64,
    max: f64,
    changes: u32,
    /// where its history is kept (`UNASKED`, `NO_HISTORY` or its index), so a point that
    /// changes on every read costs no lookup of its key
    slot: u32,
}

/// A point of a block whose history was not looked for yet.
const UNASKED: u32 = u32::MAX;
/// A point without history: the histories were full when it first changed (they never
/// shrink, so it never gets one).
const NO_HISTORY: u32 = u32::MAX - 1;

impl Block {
    /// What was read of its `i`-th point.
    fn read(&self, i: usize) -> Read {
        Read {
            reads: self.reads,
            last: self.last[i],
            min: self.stats[i].min,
            max: self.stats[i].max,
            changes: self.stats[i].changes as u64,
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
    /// the points that keep a history: where it is in `kept`
    histories: FxHashMap<PointKey, u32>,
    kept: Vec<History>,
    /// answers and written values not tracked because the tables were full
    pub untracked: u64,
}

/// The history of a point, made when there is room (None when the histories are full).
fn history_slot(
    histories: &mut FxHashMap<PointKey, u32>,
    kept: &mut Vec<History>,
    key: PointKey,
) -> Option<u32> {
    if let Some(&i) = histories.get(&key) {
        return Some(i);
    }
    if kept.len() >= MAX_HISTORIES {
        return None;
    }
    let i = kept.len() as u32;
    kept.push(History::new());
    histories.insert(key, i);
    Some(i)
}

/// Keep a value in a history (`before`: the value the point had, when the history starts
/// with this one).
fn remember(h: &mut History, before: Option<(f64, f64)>, ts: f64, v: f64) {
    if h.is_empty() {
        h.extend(before);
    }
    h.push_back((ts, v));
    while h.len() > HISTORY {
        h.pop_front();
    }
}

impl Values {
    /// Values a device reported in an answer.
    pub fn read(&mut self, device: Addr, proto: Proto, unit: u32, points: &[Points], ts: f64) {
        let Values {
            blocks,
            histories,
            kept,
            untracked,
            ..
        } = self;
        for p in points {
            let len = p.values.len() as u32;
            let key = (device, proto, unit, p.table, p.start, p.step, len);
            if let Some(b) = blocks.get_mut(&key) {
                let before = b.last_ts;
                b.reads += 1;
                b.last_ts = ts;
                if b.last == p.values {
                    continue;
                }
                let points = b.last.iter_mut().zip(b.stats.iter_mut());
                for (i, ((last, st), &v)) in points.zip(p.values.iter()).enumerate() {
                    let old = *last;
                    if old == v {
                        continue;
                    }
                    *last = v;
                    st.changes += 1;
                    st.min = st.min.min(v);
                    st.max = st.max.max(v);
                    if st.slot == UNASKED {
                        let point = (device, proto, unit, p.table, p.address(i));
                        st.slot = history_slot(histories, kept, point).unwrap_or(NO_HISTORY);
                    }
                    if let Some(h) = kept.get_mut(st.slot as usize) {
                        remember(h, Some((before, old)), ts, v);
                    }
                }
            } else if blocks.len() < MAX_BLOCKS {
                blocks.insert(
                    key,
                    Block {
                        last: p.values.clone(),
                        stats: p
                            .values
                            .iter()
                            .map(|&v| Stat {
                                min: v,
                                max: v,
                                changes: 0,
                                slot: UNASKED,
                            })
                            .collect(),
                        reads: 1,
                        last_ts: ts,
                    },
                );
            } else {
                *untracked += 1;
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
                if let Some(i) = history_slot(&mut self.histories, &mut self.kept, key) {
                    remember(&mut self.kept[i as usize], before, ts, v);
                }
            }
        }
    }

    /// The last values of a point that changed or was written (empty for the others).
    pub fn history(&self, key: &PointKey) -> Option<&History> {
        self.histories.get(key).map(|&i| &self.kept[i as usize])
    }

    /// The number of points, and the rows of those written or changed (reads of
    /// overlapping blocks folded together), in key order: without a row per idle point.
    /// Worked out per table of a device, so a plant whose values all move costs no lookup
    /// per point.
    pub fn telling(&self) -> (usize, Vec<Row>) {
        type Group<'a> = (Vec<(u32, u32, &'a Block)>, Vec<(u32, &'a Written)>);
        let mut groups: FxHashMap<(Addr, Proto, u32, Table), Group> = FxHashMap::default();
        for (&(device, proto, unit, table, start, step, _), b) in &self.blocks {
            groups
                .entry((device, proto, unit, table))
                .or_default()
                .0
                .push((start, step, b));
        }
        for (&(device, proto, unit, table, address), w) in &self.written {
            groups
                .entry((device, proto, unit, table))
                .or_default()
                .1
                .push((address, w));
        }
        let mut order: Vec<_> = groups.keys().copied().collect();
        order.sort_unstable();
        let mut total = 0;
        let mut rows = Vec::new();
        let mut points: Vec<(u32, Read)> = Vec::new();
        for g in order {
            let (device, proto, unit, table) = g;
            let (blocks, written) = groups.get_mut(&g).expect("a group");
            blocks.sort_unstable_by_key(|&(start, step, b)| (start, step, b.last.len()));
            written.sort_unstable_by_key(|&(address, _)| address);
            points.clear();
            for &(start, step, b) in blocks.iter() {
                points.extend((0..b.last.len()).map(|i| (nth_address(start, step, i), b.read(i))));
            }
            points.sort_by_key(|&(address, _)| address); // in order but where blocks overlap
            points.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 = fold(kept.1, later.1);
                }
                same
            });
            total += points.len();
            let mut w = written.iter().peekable();
            for &(address, read) in points.iter() {
                while let Some(&(only_written, wr)) = w.next_if(|(a, _)| *a < address) {
                    total += 1;
                    rows.push(Row {
                        key: (device, proto, unit, table, only_written),
                        read: None,
                        written: Some(wr.clone()),
                    });
                }
                let wrote = w
                    .next_if(|(a, _)| *a == address)
                    .map(|(_, wr)| (*wr).clone());
                if wrote.is_some() || read.changes > 0 {
                    rows.push(Row {
                        key: (device, proto, unit, table, address),
                        read: Some(read),
                        written: wrote,
                    });
                }
            }
            for &(only_written, wr) in w {
                total += 1;
                rows.push(Row {
                    key: (device, proto, unit, table, only_written),
                    read: None,
                    written: Some(wr.clone()),
                });
            }
        }
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

    proptest::proptest! {
        /// The telling rows are every point's rows (worked out point by point) that were
        /// written or changed, whatever the blocks' overlaps, steps and writes.
        #[test]
        fn telling_rows_are_the_written_or_changed_of_all_rows(
            reads in proptest::collection::vec(
                (0u8..2, 0u32..3, 0u32..40, 1u32..3, proptest::collection::vec(0u8..3, 1..6)),
                0..40),
            writes in proptest::collection::vec((0u8..2, 0u32..3, 0u32..60, 0u8..3), 0..20),
        ) {
            let mut v = Values::default();
            let table = |t: u32| if t == 0 { Table::Modbus("coils") } else { Table::Dnp3(t as u8) };
            let mut ts = 0.0;
            for (dev, t, start, step, values) in &reads {
                ts += 1.0;
                let p = Points { table: table(*t), start: *start, step: *step,
                                 values: values.iter().map(|&x| f64::from(x)).collect() };
                v.read(Addr::new(&[10, 0, 0, *dev]), Proto::Dnp3, 1, &[p], ts);
            }
            for (dev, t, address, value) in &writes {
                ts += 1.0;
                let p = Points { table: table(*t), start: *address, step: 1,
                                 values: vec![f64::from(*value)] };
                v.write(Addr::new(&[10, 0, 0, *dev]), Proto::Dnp3, 1,
                        Addr::new(&[10, 0, 0, 9]), &[p], ts);
            }
            let all = v.rows();
            let (total, telling) = v.telling();
            proptest::prop_assert_eq!(total, all.len());
            let expected: Vec<_> = all
                .iter()
                .filter(|r| r.written.is_some() || r.read.is_some_and(|x| x.changes > 0))
                .map(|r| (r.key, r.read.map(|x| (x.reads, x.last, x.min, x.max, x.changes)),
                          r.written.as_ref().map(|w| (w.writes, w.last))))
                .collect();
            let got: Vec<_> = telling
                .iter()
                .map(|r| (r.key, r.read.map(|x| (x.reads, x.last, x.min, x.max, x.changes)),
                          r.written.as_ref().map(|w| (w.writes, w.last))))
                .collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
