//! Device availability: a device that answered before, then leaves the requests sent to
//! it unanswered for a while, is down; whatever it sends next brings it back. Each outage
//! is reported twice: when it is found, and when it ends.

use rustc_hash::FxHashMap;

use crate::decode::Addr;
use crate::events::Proto;

/// Seconds of requests without any answer before a device is called down...
pub const SILENT_FOR: f64 = 10.0;
/// ... and the requests it must have left unanswered in that time.
pub const MIN_REQUESTS: u64 = 3;
/// Devices followed; beyond, counted as untracked.
const MAX_DEVICES: usize = 65_536;

struct Device {
    addr: Addr,
    proto: Proto,
    answered: bool,
    /// the first request left unanswered since the last answer
    waiting_since: Option<f64>,
    waiting: u64,
    down: bool,
}

/// A device went down (`up` false) or came back.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub device: Addr,
    pub proto: Proto,
    pub up: bool,
    /// the first request left unanswered
    pub since: f64,
    /// when it was found down, or answered again
    pub at: f64,
    /// requests left unanswered so far
    pub requests: u64,
}

#[derive(Default)]
pub struct Availability {
    slots: FxHashMap<(Addr, Proto), u32>,
    devices: Vec<Device>,
    pub changes: Vec<Change>,
    pub untracked: u64,
}

impl Availability {
    /// The slot of a device (a flow keeps it, so that its PDUs need no lookup); None when
    /// the table is full.
    pub fn slot(&mut self, device: Addr, proto: Proto) -> Option<u32> {
        if let Some(&slot) = self.slots.get(&(device, proto)) {
            return Some(slot);
        }
        if self.devices.len() >= MAX_DEVICES {
            self.untracked += 1;
            return None;
        }
        let slot = self.devices.len() as u32;
        self.devices.push(Device {
            addr: device,
            proto,
            answered: false,
            waiting_since: None,
            waiting: 0,
            down: false,
        });
        self.slots.insert((device, proto), slot);
        Some(slot)
    }

    /// A request that expects an answer was sent to the device in `slot`.
    pub fn request(&mut self, slot: u32, ts: f64) {
        let d = &mut self.devices[slot as usize];
        if !d.answered {
            return; // never heard from: nothing to lose yet
        }
        let since = *d.waiting_since.get_or_insert(ts);
        d.waiting += 1;
        if !d.down && ts - since >= SILENT_FOR && d.waiting >= MIN_REQUESTS {
            d.down = true;
            let requests = d.waiting;
            self.changes.push(Change {
                device: d.addr,
                proto: d.proto,
                up: false,
                since,
                at: ts,
                requests,
            });
        }
    }

    /// The device in `slot` sent something of its protocol (an answer, an unsolicited
    /// report).
    pub fn answer(&mut self, slot: u32, ts: f64) {
        let d = &mut self.devices[slot as usize];
        d.answered = true;
        let since = d.waiting_since.take();
        let requests = std::mem::take(&mut d.waiting);
        if std::mem::take(&mut d.down) {
            self.changes.push(Change {
                device: d.addr,
                proto: d.proto,
                up: true,
                since: since.unwrap_or(ts),
                at: ts,
                requests,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_found_once_and_ends_with_the_next_answer() {
        let plc = Addr::new(&[10, 0, 0, 1]);
        let mut a = Availability::default();
        let s = a.slot(plc, Proto::Modbus).unwrap();
        a.request(s, 0.0); // never answered yet: not followed
        a.answer(s, 0.1);
        for i in 1..=30 {
            a.request(s, i as f64); // from 1 s on, nothing comes back
        }
        assert_eq!(a.changes.len(), 1);
        let down = &a.changes[0];
        assert_eq!(
            (down.up, down.since, down.at, down.requests),
            (false, 1.0, 11.0, 11)
        );
        a.answer(s, 31.0);
        a.answer(s, 32.0);
        assert_eq!(a.changes.len(), 2);
        let up = &a.changes[1];
        assert_eq!((up.up, up.since, up.at, up.requests), (true, 1.0, 31.0, 30));
    }

    #[test]
    fn slow_answers_are_not_an_outage() {
        let plc = Addr::new(&[10, 0, 0, 1]);
        let mut a = Availability::default();
        let s = a.slot(plc, Proto::Dnp3).unwrap();
        for i in 0..100 {
            a.request(s, i as f64);
            a.answer(s, i as f64 + 0.9);
        }
        assert!(a.changes.is_empty());
    }
}
