//! The dissectors, and how a flow is matched to one.
//!
//! A flow is matched on the protocol's well-known port first (then its first payload must
//! still look like the protocol, so HTTP or TLS on port 502 is not taken for Modbus), and
//! by content alone on any other port.

pub mod dnp3;
pub mod modbus;
pub mod s7comm;

use crate::events::Event;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Modbus,
    S7comm,
    Dnp3,
}

/// The registry, in the order content recognition tries them.
pub const REGISTRY: [Kind; 3] = [Kind::Modbus, Kind::S7comm, Kind::Dnp3];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Modbus => "modbus",
            Kind::S7comm => "s7comm",
            Kind::Dnp3 => "dnp3",
        }
    }

    pub fn tcp_port(self) -> u16 {
        match self {
            Kind::Modbus => modbus::PORT,
            Kind::S7comm => s7comm::PORT,
            Kind::Dnp3 => dnp3::PORT,
        }
    }

    pub fn udp_port(self) -> Option<u16> {
        match self {
            Kind::Modbus => Some(modbus::PORT),
            Kind::S7comm => None,
            Kind::Dnp3 => Some(dnp3::PORT),
        }
    }

    pub fn probe(self, payload: &[u8], strict: bool) -> bool {
        match self {
            Kind::Modbus => modbus::looks_like(payload, strict),
            Kind::S7comm => s7comm::looks_like(payload, strict),
            Kind::Dnp3 => dnp3::looks_like(payload, strict),
        }
    }

    pub fn parser(self) -> Parser {
        match self {
            Kind::Modbus => Parser::Modbus(Box::default()),
            Kind::S7comm => Parser::S7(Box::default()),
            Kind::Dnp3 => Parser::Dnp3(Box::default()),
        }
    }

    pub fn by_port(tcp: bool, port: u16) -> Option<Kind> {
        REGISTRY.into_iter().find(|k| {
            if tcp {
                k.tcp_port() == port
            } else {
                k.udp_port() == Some(port)
            }
        })
    }
}

/// Clearly something else (HTTP, TLS, SSH), whatever the port says.
pub fn is_other_protocol(p: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 8] = [
        b"GET ",
        b"POST",
        b"HEAD",
        b"PUT ",
        b"HTTP",
        b"\x16\x03",
        b"SSH-",
        b"OPTI",
    ];
    PREFIXES.iter().any(|pre| p.starts_with(pre))
}

/// A flow's dissector.
pub enum Parser {
    Modbus(Box<modbus::Parser>),
    S7(Box<s7comm::Parser>),
    Dnp3(Box<dnp3::Parser>),
}

/// What a dissector holds: (bytes buffered in the larger direction, requests waiting for
/// an answer, partial reassemblies). Every one of them is bounded.
pub type Held = (usize, usize, usize);

impl Parser {
    pub fn held(&self) -> Held {
        match self {
            Parser::Modbus(p) => p.held(),
            Parser::S7(p) => p.held(),
            Parser::Dnp3(p) => p.held(),
        }
    }

    pub fn feed(&mut self, data: &[u8], from_client: bool, gap: bool, out: &mut Vec<Event>) {
        match self {
            Parser::Modbus(p) => p.feed(data, from_client, gap, out),
            Parser::S7(p) => p.feed(data, from_client, gap, out),
            Parser::Dnp3(p) => p.feed(data, from_client, gap, out),
        }
    }

    pub fn feed_datagram(&mut self, data: &[u8], from_client: bool, out: &mut Vec<Event>) {
        match self {
            Parser::Modbus(p) => p.feed_datagram(data, from_client, out),
            Parser::S7(p) => p.feed_datagram(data, from_client, out),
            Parser::Dnp3(p) => p.feed_datagram(data, from_client, out),
        }
    }
}
