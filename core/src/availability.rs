//! Device availability: a device that answered before, then leaves the requests sent to
//! it unanswered for a while, or refuses the connections of a client it served (a reset
//! answering the SYN: nothing listens on its port any more), is down; whatever it sends
//! next brings it back. Each outage is reported twice: when it is found, and when it ends.

use rustc_hash::FxHashMap;

use crate::decode::Addr;
use crate::events::Proto;

/// Seconds of requests without any answer before a device is called down...
pub const SILENT_FOR: f64 = 10.0;
/// ... and the requests it must have left unanswered in that time.
pub const MIN_REQUESTS: u64 = 3;
/// Connections refused to a client the port served before a device is called down (one
/// reset may be a client's mistake or a port being restarted; a master retrying meets
/// several).
pub const MIN_REFUSALS: u64 = 3;
/// Devices followed; beyond, counted as untracked.
const MAX_DEVICES: usize = 65_536;
/// (client, server, port) paths known to have been served; beyond, new ones are not
/// followed for refusals.
const MAX_SERVED: usize = 262_144;

struct Device {
    addr: Addr,
    proto: Proto,
    answered: bool,
    /// the first request left unanswered since the last answer
    waiting_since: Option<f64>,
    waiting: u64,
    /// connections refused since the last answer
    refused: u64,
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
    /// connections refused so far
    pub refused: u64,
}

#[derive(Default)]
pub struct Availability {
    slots: FxHashMap<(Addr, Proto), u32>,
    devices: Vec<Device>,
    /// the device slot that answered a client at a server port: (client, server, port)
    served: FxHashMap<(Addr, Addr, u16), u32>,
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
            refused: 0,
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
        if ts - since >= SILENT_FOR && d.waiting >= MIN_REQUESTS {
            self.down(slot, ts);
        }
    }

    /// The device in `slot` answered `client` at its `port` (once per connection is
    /// enough): a refusal on that path later means the device is gone.
    pub fn served(&mut self, slot: u32, client: Addr, port: u16) {
        let server = self.devices[slot as usize].addr;
        if self.served.len() < MAX_SERVED || self.served.contains_key(&(client, server, port)) {
            self.served.insert((client, server, port), slot);
        }
    }

    /// `server` refused a connection from `client` to `port` (a reset answering its SYN).
    pub fn refused(&mut self, client: Addr, server: Addr, port: u16, ts: f64) {
        let Some(&slot) = self.served.get(&(client, server, port)) else {
            return; // a port that never served this client: a scan, a mistake
        };
        let d = &mut self.devices[slot as usize];
        d.waiting_since.get_or_insert(ts);
        d.refused += 1;
        if d.refused >= MIN_REFUSALS {
            self.down(slot, ts);
        }
    }

    fn down(&mut self, slot: u32, ts: f64) {
        let d = &mut self.devices[slot as usize];
        if std::mem::replace(&mut d.down, true) {
            return;
        }
        self.changes.push(Change {
            device: d.addr,
            proto: d.proto,
            up: false,
            since: d.waiting_since.unwrap_or(ts),
            at: ts,
            requests: d.waiting,
            refused: d.refused,
        });
    }

    /// The device in `slot` sent something of its protocol (an answer, an unsolicited
    /// report).
    pub fn answer(&mut self, slot: u32, ts: f64) {
        let d = &mut self.devices[slot as usize];
        d.answered = true;
        let since = d.waiting_since.take();
        let requests = std::mem::take(&mut d.waiting);
        let refused = std::mem::take(&mut d.refused);
        if std::mem::take(&mut d.down) {
            self.changes.push(Change {
                device: d.addr,
                proto: d.proto,
                up: true,
                since: since.unwrap_or(ts),
                at: ts,
                requests,
                refused,
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
    fn refused_connections_of_a_served_client_are_an_outage() {
        let (plc, hmi, scanner) = (
            Addr::new(&[10, 0, 0, 1]),
            Addr::new(&[10, 0, 0, 2]),
            Addr::new(&[10, 0, 0, 3]),
        );
        let mut a = Availability::default();
        let s = a.slot(plc, Proto::Dnp3).unwrap();
        a.refused(hmi, plc, 20000, 0.5); // never served: nothing to lose
        a.answer(s, 1.0);
        a.served(s, hmi, 20000);
        for i in 0..10 {
            a.refused(scanner, plc, 20000, 2.0 + i as f64); // never served that client
            a.refused(hmi, plc, 502, 2.0 + i as f64); // nor at that port
        }
        a.refused(hmi, plc, 20000, 5.0);
        a.refused(hmi, plc, 20000, 10.0);
        assert!(a.changes.is_empty(), "one or two resets are not an outage");
        a.refused(hmi, plc, 20000, 15.0);
        a.refused(hmi, plc, 20000, 20.0);
        assert_eq!(a.changes.len(), 1);
        let down = &a.changes[0];
        assert_eq!(
            (down.up, down.since, down.at, down.requests, down.refused),
            (false, 5.0, 15.0, 0, 3)
        );
        a.answer(s, 30.0);
        let up = &a.changes[1];
        assert_eq!((up.up, up.since, up.at, up.refused), (true, 5.0, 30.0, 4));
        a.refused(hmi, plc, 20000, 40.0); // counted again from the answer
        assert_eq!(a.changes.len(), 2);
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
