//! What a PDU means, decided once when it is parsed: the function it uses, whether it
//! writes or commands, the unit and ranges it touches, and what it says about the roles
//! of the hosts at each end. The graph, the inventory and the detections read this.

use crate::events::{Body, Event, Req};

/// Where a range lives: a Modbus table, or an S7 area (with its DB number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Modbus(&'static str),
    S7 { area: u8, db: u16 },
}

impl Table {
    pub fn name(&self) -> String {
        match *self {
            Table::Modbus(t) => t.to_string(),
            Table::S7 { area, db } => {
                let base = match area {
                    0x81 => "I".to_string(),
                    0x82 => "Q".to_string(),
                    0x83 => "M".to_string(),
                    0x84 => "DB".to_string(),
                    0x85 => "DI".to_string(),
                    0x1C => "C".to_string(),
                    0x1D => "T".to_string(),
                    0x80 => "P".to_string(),
                    other => format!("area{other}"),
                };
                if area == 0x84 {
                    format!("{base}{db}")
                } else {
                    base
                }
            }
        }
    }
}

/// The use one PDU makes of an edge.
#[derive(Clone, Debug, Default)]
pub struct Use {
    /// Modbus: the raw function byte; S7: the function, or 0x1000 + group * 0x100 +
    /// sub-function for userdata; S7comm-plus: the function; DNP3: the function code
    pub code: u32,
    pub writes: bool,
    /// changes the device or process: writes, controls, programming
    pub command: bool,
    /// Modbus unit id, DNP3 outstation address
    pub unit: Option<u32>,
    pub ranges: Vec<(Table, i64, i64)>,
    /// DNP3 object groups a request names
    pub groups: Vec<u8>,
}

pub const USERDATA_BASE: u32 = 0x1000;
const MODBUS_WRITES: [u8; 7] = [5, 6, 15, 16, 21, 22, 23];
const MODBUS_PROGRAMMING: [u8; 5] = [40, 41, 42, 125, 126];
const S7PLUS_WRITES: [u16; 5] = [0x04CA, 0x04D4, 0x04F2, 0x0542, 0x056B];
const DNP3_WRITES: [u8; 13] = [2, 3, 4, 5, 6, 15, 16, 17, 18, 19, 25, 27, 31];

fn modbus_table(fc: u8) -> Option<&'static str> {
    Some(match fc {
        1 | 5 | 15 => "coils",
        2 => "discrete_inputs",
        4 => "input_registers",
        3 | 6 | 16 | 22 | 23 | 24 => "holding_registers",
        _ => return None,
    })
}

fn s7_programming(fc: u8) -> bool {
    matches!(fc, 0x1A..=0x1F | 0x28 | 0x29)
}

/// The function code of a record as the graph counts it (see `Use::code`).
pub fn code(ev: &Event) -> Option<u32> {
    match &ev.body {
        Body::Modbus(p) => Some(p.function_code as u32),
        Body::S7(p) => match (p.rosctr, p.group) {
            (7, Some(group)) => {
                Some(USERDATA_BASE + group as u32 * 0x100 + p.subfunction.unwrap_or(0) as u32)
            }
            _ => p.function_code.map(u32::from),
        },
        Body::S7Plus(p) => p.function_code.map(u32::from),
        Body::Dnp3(p) => Some(p.function_code as u32),
        Body::Anomaly(_) => None,
    }
}

pub fn describe(ev: &Event) -> Option<Use> {
    match &ev.body {
        Body::Modbus(p) => {
            let fc = p.function_code;
            let writes = ev.from_client && MODBUS_WRITES.contains(&fc);
            let command = ev.from_client
                && (writes || fc == 8 || fc == 90 || MODBUS_PROGRAMMING.contains(&fc));
            let mut ranges = Vec::new();
            if let (true, Some(table), Some(addr)) = (ev.from_client, modbus_table(fc), p.address) {
                let count = p.quantity.filter(|&q| q != 0).unwrap_or(1);
                ranges.push((Table::Modbus(table), addr as i64, count as i64));
                if let Some(wa) = p.write_address {
                    let wq = p.write_quantity.filter(|&q| q != 0).unwrap_or(1);
                    ranges.push((Table::Modbus(table), wa as i64, wq as i64));
                }
            }
            Some(Use {
                code: fc as u32,
                writes,
                command,
                unit: Some(p.unit_id as u32),
                ranges,
                groups: Vec::new(),
            })
        }
        Body::S7(p) => {
            if let (7, Some(group)) = (p.rosctr, p.group) {
                let code = USERDATA_BASE + group as u32 * 0x100 + p.subfunction.unwrap_or(0) as u32;
                let command = p.userdata_type == Some(4) && matches!(group, 1 | 5 | 7);
                return Some(Use {
                    code,
                    command,
                    ..Default::default()
                });
            }
            let fc = p.function_code?;
            let job = p.rosctr == 1;
            let mut ranges = Vec::new();
            if job {
                for it in p.items.iter().take(32) {
                    let table = Table::S7 {
                        area: it.area,
                        db: if it.area == 0x84 { it.db } else { 0 },
                    };
                    ranges.push((table, it.byte as i64, (it.length as i64).max(1)));
                }
            }
            Some(Use {
                code: fc as u32,
                writes: job && fc == 0x05,
                command: job && (fc == 0x05 || s7_programming(fc)),
                ranges,
                ..Default::default()
            })
        }
        Body::S7Plus(p) => {
            let fc = p.function_code?;
            let writes = ev.is_request() && S7PLUS_WRITES.contains(&fc);
            Some(Use {
                code: fc as u32,
                writes,
                command: writes,
                ..Default::default()
            })
        }
        Body::Dnp3(p) => {
            let fc = p.function_code;
            let request = fc < 0x80;
            let unit = if request {
                p.destination_address
            } else {
                p.source_address
            };
            let mut groups: Vec<u8> = if request {
                p.objects.iter().map(|o| o.group).collect()
            } else {
                Vec::new()
            };
            groups.sort_unstable();
            groups.dedup();
            Some(Use {
                code: fc as u32,
                writes: DNP3_WRITES.contains(&fc),
                command: fc > 1 && fc < 0x80 && fc != 23,
                unit: Some(unit as u32),
                ranges: Vec::new(),
                groups,
            })
        }
        Body::Anomaly(_) => None,
    }
}

/// Behaviour evidence for the requesting and the answering host, `<protocol>-<behaviour>`.
/// Programming counts only when the device accepted it (a refused scanner is no
/// engineering workstation).
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub client: Option<&'static str>,
    pub server: Option<&'static str>,
}

fn accepted_req(req: Option<&Req>) -> Option<&Req> {
    req.filter(|r| r.accepted)
}

pub fn evidence(ev: &Event) -> Evidence {
    let req = ev.req.as_deref();
    match &ev.body {
        Body::Modbus(p) => {
            if ev.from_client {
                let fc = p.function_code;
                if MODBUS_WRITES.contains(&fc) {
                    return Evidence {
                        client: Some("modbus-write"),
                        server: None,
                    };
                }
                if MODBUS_PROGRAMMING.contains(&fc) || fc == 90 {
                    return Evidence::default();
                }
                return Evidence {
                    client: Some("modbus-read"),
                    server: None,
                };
            }
            let programming = accepted_req(req)
                .and_then(|r| r.function_code)
                .is_some_and(|fc| fc == 90 || MODBUS_PROGRAMMING.iter().any(|&p| p as u16 == fc));
            Evidence {
                client: programming.then_some("modbus-programming"),
                server: Some("modbus-server"),
            }
        }
        Body::S7(p) => {
            if p.from_request() {
                if !ev.from_client {
                    return Evidence::default(); // the PLC's own download-block jobs
                }
                if p.rosctr == 1 {
                    let fc = p.function_code;
                    if fc.is_some_and(s7_programming) {
                        return Evidence::default();
                    }
                    let b = if fc == Some(0x05) {
                        "s7comm-write"
                    } else {
                        "s7comm-read"
                    };
                    return Evidence {
                        client: Some(b),
                        server: None,
                    };
                }
                return Evidence {
                    client: Some("s7comm-read"),
                    server: None,
                };
            }
            if ev.from_client {
                // the station answering the PLC's download-block jobs
                return Evidence::default();
            }
            let programming = accepted_req(req).is_some_and(|r| {
                r.function_code
                    .is_some_and(|fc| fc <= 0xFF && s7_programming(fc as u8))
                    || (r.rosctr == 7 && r.group.is_some_and(|g| matches!(g, 1 | 3 | 5)))
            });
            Evidence {
                client: programming.then_some("s7comm-programming"),
                server: Some("s7comm-server"),
            }
        }
        Body::S7Plus(p) => {
            if ev.is_request() {
                let write = p
                    .function_code
                    .is_some_and(|fc| S7PLUS_WRITES.contains(&fc));
                let b = if write {
                    "s7comm_plus-write"
                } else {
                    "s7comm_plus-read"
                };
                Evidence {
                    client: Some(b),
                    server: None,
                }
            } else {
                Evidence {
                    client: None,
                    server: Some("s7comm_plus-server"),
                }
            }
        }
        Body::Dnp3(p) => {
            let fc = p.function_code;
            if fc >= 0x80 {
                Evidence {
                    client: None,
                    server: Some("dnp3-outstation"),
                }
            } else if fc == 0 {
                Evidence::default() // a confirm says nothing about roles
            } else if DNP3_WRITES.contains(&fc) {
                Evidence {
                    client: Some("dnp3-write"),
                    server: None,
                }
            } else {
                Evidence {
                    client: Some("dnp3-read"),
                    server: None,
                }
            }
        }
        Body::Anomaly(_) => Evidence::default(),
    }
}
