//! Connection attempts counted per time window: a flood of new TCP connections at one
//! server (spoofed sources or not) and a scan from one source over many targets. These are
//! per-packet counts, so they live here; the policy only sees one report per window.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::decode::Addr;

/// Length of a counting window, seconds of capture time.
pub const WINDOW: f64 = 10.0;
/// New connections at one server within a window that make a flood.
pub const FLOOD_MIN: u32 = 500;
/// Distinct targets (address and port) of one source within a window that make a scan.
pub const SCAN_MIN: u32 = 64;
/// Servers and sources tracked per window (beyond these, attempts are counted as untracked).
const MAX_KEYS: usize = 65_536;
/// Distinct sources or targets remembered per key; counts go on beyond it.
const MAX_DISTINCT: usize = 4_096;

#[derive(Default)]
struct Server {
    flows: u32,
    sources: FxHashSet<Addr>,
    more_sources: u32,
    first: f64,
    last: f64,
}

#[derive(Default)]
struct Source {
    targets: FxHashSet<(Addr, u16)>,
    more_targets: u32,
    first: f64,
    last: f64,
}

/// What one window showed.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Flood {
        server: Addr,
        port: u16,
        flows: u32,
        sources: u32,
        first: f64,
        last: f64,
    },
    Scan {
        source: Addr,
        targets: u32,
        hosts: u32,
        ports: u32,
        first: f64,
        last: f64,
    },
}

#[derive(Default)]
pub struct Probes {
    start: Option<f64>,
    servers: FxHashMap<(Addr, u16), Server>,
    sources: FxHashMap<Addr, Source>,
    pub untracked: u64,
}

impl Probes {
    /// A connection attempt (a SYN opening a new flow); reports of finished windows go to
    /// `out`.
    pub fn syn(&mut self, src: Addr, dst: Addr, port: u16, ts: f64, out: &mut Vec<Probe>) {
        match self.start {
            Some(s) if ts >= s + WINDOW || ts < s => self.close(out, Some(ts)),
            None => self.start = Some(ts),
            _ => {}
        }
        let room = self.servers.len() < MAX_KEYS;
        match self.servers.get_mut(&(dst, port)) {
            Some(s) => s.note(src, ts),
            None if room => {
                let mut s = Server {
                    first: ts,
                    ..Server::default()
                };
                s.note(src, ts);
                self.servers.insert((dst, port), s);
            }
            None => self.untracked += 1,
        }
        let room = self.sources.len() < MAX_KEYS;
        match self.sources.get_mut(&src) {
            Some(s) => s.note(dst, port, ts),
            None if room => {
                let mut s = Source {
                    first: ts,
                    ..Source::default()
                };
                s.note(dst, port, ts);
                self.sources.insert(src, s);
            }
            None => self.untracked += 1,
        }
    }

    /// End the current window (at the end of the input too): report what crossed a line.
    pub fn close(&mut self, out: &mut Vec<Probe>, next: Option<f64>) {
        let mut floods: Vec<Probe> = self
            .servers
            .drain()
            .filter(|(_, s)| s.flows >= FLOOD_MIN)
            .map(|((server, port), s)| Probe::Flood {
                server,
                port,
                flows: s.flows,
                sources: s.sources.len() as u32 + s.more_sources,
                first: s.first,
                last: s.last,
            })
            .collect();
        let mut scans: Vec<Probe> = self
            .sources
            .drain()
            .filter(|(_, s)| s.targets.len() as u32 + s.more_targets >= SCAN_MIN)
            .map(|(source, s)| {
                let hosts: FxHashSet<Addr> = s.targets.iter().map(|t| t.0).collect();
                let ports: FxHashSet<u16> = s.targets.iter().map(|t| t.1).collect();
                Probe::Scan {
                    source,
                    targets: s.targets.len() as u32 + s.more_targets,
                    hosts: hosts.len() as u32,
                    ports: ports.len() as u32,
                    first: s.first,
                    last: s.last,
                }
            })
            .collect();
        // the same order whatever the hashing did
        floods.sort_by_key(key);
        scans.sort_by_key(key);
        out.extend(floods);
        out.extend(scans);
        self.start = next;
    }
}

fn key(p: &Probe) -> (Addr, u16) {
    match p {
        Probe::Flood { server, port, .. } => (*server, *port),
        Probe::Scan { source, .. } => (*source, 0),
    }
}

impl Server {
    fn note(&mut self, src: Addr, ts: f64) {
        self.flows += 1;
        self.last = ts;
        if self.sources.len() < MAX_DISTINCT {
            self.sources.insert(src);
        } else if !self.sources.contains(&src) {
            self.more_sources += 1; // an estimate beyond the set: spoofed sources rarely repeat
        }
    }
}

impl Source {
    fn note(&mut self, dst: Addr, port: u16, ts: f64) {
        self.last = ts;
        if self.targets.len() < MAX_DISTINCT {
            self.targets.insert((dst, port));
        } else if !self.targets.contains(&(dst, port)) {
            self.more_targets += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u8, b: u8) -> Addr {
        Addr::new(&[10, 0, a, b])
    }

    #[test]
    fn a_flood_and_a_scan_are_reported_once_per_window() {
        let mut p = Probes::default();
        let mut out = Vec::new();
        for i in 0..600u32 {
            p.syn(
                ip(9, (i % 250) as u8),
                ip(1, 10),
                502,
                i as f64 * 0.01,
                &mut out,
            );
        }
        for port in 1..100u16 {
            p.syn(ip(2, 2), ip(1, 20), port, 7.0, &mut out);
        }
        for i in 0..10 {
            p.syn(ip(3, 3), ip(1, 10), 502, 10.5 + i as f64 * 0.1, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert!(matches!(
            out[0],
            Probe::Flood {
                flows: 600,
                sources: 250,
                port: 502,
                ..
            }
        ));
        assert!(matches!(
            out[1],
            Probe::Scan {
                targets: 99,
                hosts: 1,
                ports: 99,
                ..
            }
        ));
        p.close(&mut out, None);
        assert_eq!(out.len(), 2); // ten attempts in the next window are nothing
    }
}
