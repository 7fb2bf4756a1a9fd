//! The records dissectors emit: one per application PDU, or one per parse anomaly. Each
//! protocol's PDU record is defined in its module under `protocols/`, with its parser.
//!
//! Field names and meanings are those of the `otsec.<protocol>` object of the PDU event
//! document (see `output.rs`).

use crate::meaning::Table;
use crate::protocols::Record;

/// A deviation found while parsing; the flow goes on being parsed.
#[derive(Clone, Debug)]
pub struct Anomaly {
    /// the protocol family that found it (S7comm-plus anomalies are `s7comm`)
    pub protocol: Proto,
    pub kind: &'static str,
    pub detail: String,
}

// each protocol's record is defined with its parser
pub use crate::protocols::dnp3::{Dnp3Object, Dnp3Pdu};
pub use crate::protocols::modbus::ModbusPdu;
pub use crate::protocols::s7comm::{S7Item, S7Pdu, S7PlusPdu, Tsaps};

/// Declares the record types: the protocol each is reported under (`Proto`, with its
/// name in outputs and rules) and the `Body` variant that holds it.
macro_rules! records {
    ($($variant:ident($record:ty) = $name:literal,)+) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Proto {
            $($variant,)+
        }

        impl Proto {
            pub const ALL: &'static [Proto] = &[$(Proto::$variant,)+];

            pub fn name(self) -> &'static str {
                match self {
                    $(Proto::$variant => $name,)+
                }
            }
        }

        #[derive(Clone, Debug)]
        pub enum Body {
            $($variant($record),)+
            Anomaly(Anomaly),
        }

        impl Body {
            /// The protocol record it holds (None: a parse anomaly).
            pub fn record(&self) -> Option<&dyn Record> {
                match self {
                    $(Body::$variant(p) => Some(p),)+
                    Body::Anomaly(_) => None,
                }
            }

            pub fn protocol(&self) -> Proto {
                match self {
                    $(Body::$variant(_) => Proto::$variant,)+
                    Body::Anomaly(a) => a.protocol,
                }
            }
        }
    };
}

records! {
    Modbus(ModbusPdu) = "modbus",
    S7comm(S7Pdu) = "s7comm",
    S7commPlus(S7PlusPdu) = "s7comm_plus",
    Dnp3(Dnp3Pdu) = "dnp3",
}

/// What a response knows of the request it answers (paired by the dissector).
#[derive(Clone, Debug, Default)]
pub struct Req {
    /// the request's transaction token (see `Event::txn`)
    pub txn: u32,
    pub rosctr: u8,
    pub function_code: Option<u16>,
    pub subfunction: Option<u16>,
    pub group: Option<u8>,
    pub address: Option<u16>,
    pub quantity: Option<u16>,
    /// the device accepted it (no exception, error class or failing IIN bits)
    pub accepted: bool,
}

/// Process values a PDU carries: points of one table from `start`, `step` apart (1 for
/// registers, coils and DNP3 points; an S7 element's size in bytes), as numbers on the wire
/// (registers as unsigned 16-bit, coils as 0/1, DNP3 values by their variation, S7 elements
/// by their type). Values a request carries are written; a response's are read.
#[derive(Clone, Debug, PartialEq)]
pub struct Points {
    pub table: Table,
    pub start: u32,
    pub step: u32,
    pub values: Vec<f64>,
}

impl Points {
    /// The address of the `i`-th value.
    pub fn address(&self, i: usize) -> u32 {
        nth_address(self.start, self.step, i)
    }
}

/// The address of the `i`-th of points `step` apart from `start`.
pub fn nth_address(start: u32, step: u32, i: usize) -> u32 {
    start.wrapping_add((i as u32).wrapping_mul(step))
}

/// Values kept from one PDU (a Modbus read of 2,000 coils keeps the first ones).
pub const MAX_POINTS: usize = 256;

/// One record out of a dissector, with the direction it travelled.
#[derive(Clone, Debug)]
pub struct Event {
    /// sent by the flow's client (TCP or protocol role)
    pub from_client: bool,
    pub body: Body,
    /// a request waiting for its answer: its token within the flow (0: none)
    pub txn: u32,
    /// a response: the request it answers
    pub req: Option<Req>,
    /// process values it writes (a request) or reports (a response)
    pub points: Vec<Points>,
}

impl Event {
    pub fn new(from_client: bool, body: Body) -> Self {
        Event {
            from_client,
            body,
            txn: 0,
            req: None,
            points: Vec::new(),
        }
    }

    pub fn anomaly(from_client: bool, protocol: Proto, kind: &'static str, detail: String) -> Self {
        Event::new(
            from_client,
            Body::Anomaly(Anomaly {
                protocol,
                kind,
                detail,
            }),
        )
    }

    /// What a PDU's dissector found wrong in it (empty for anomaly records themselves).
    pub fn pdu_anomalies(&self) -> &[&'static str] {
        self.body.record().map_or(&[], |r| r.anomalies())
    }

    pub fn protocol(&self) -> Proto {
        self.body.protocol()
    }

    /// Request or response, from the protocol's own semantics.
    pub fn is_request(&self) -> bool {
        self.body
            .record()
            .map_or(self.from_client, |r| r.is_request(self.from_client))
    }
}
