//! What a PDU means, decided once when it is parsed: the function it uses, whether it
//! writes or commands, the unit and ranges it touches, and what it says about the roles
//! of the hosts at each end. The graph, the inventory and the detections read this.

use crate::events::Event;

/// Where a range lives: a Modbus table, an S7 area (with its DB number), or the DNP3
/// points of an object group (controls: g12 binary, g41 analog outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Modbus(&'static str),
    S7 { area: u8, db: u16 },
    Dnp3(u8),
}

impl Table {
    pub fn name(&self) -> String {
        match *self {
            Table::Modbus(t) => t.to_string(),
            Table::Dnp3(group) => format!("g{group}"),
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
/// The function code of a record as the graph counts it (see `Use::code`).
pub fn code(ev: &Event) -> Option<u32> {
    ev.body.record()?.code()
}

/// What a record does, by the protocol module that parsed it.
pub fn describe(ev: &Event) -> Option<Use> {
    ev.body.record()?.describe(ev.from_client)
}

/// Behaviour evidence for the requesting and the answering host, `<protocol>-<behaviour>`.
/// Programming counts only when the device accepted it (a refused scanner is no
/// engineering workstation).
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub client: Option<&'static str>,
    pub server: Option<&'static str>,
}

/// What a record says about the roles of the hosts at each end.
pub fn evidence(ev: &Event) -> Evidence {
    ev.body.record().map_or_else(Evidence::default, |r| {
        r.evidence(ev.from_client, ev.req.as_ref())
    })
}
