//! Link, tunnel, IP and transport headers on buffer offsets (nothing is copied).
//!
//! Link types: Ethernet (802.1Q/802.1ad tags), Linux cooked v1/v2, raw IPv4/IPv6, BSD
//! null/loopback. Tunnels and label stacks are opened down to the innermost IP packet:
//! MPLS (IP, or Ethernet behind a pseudowire control word), GRE (IP, Ethernet, MPLS,
//! ERSPAN type I, II and III), VXLAN (UDP port 4789), NSH, IP in IP. IPv6 extension
//! headers are walked. A fragment is reported as such, with where its IP header starts,
//! for `defrag` to put its datagram together.

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_SLL2: u32 = 276;

/// The link types the decoder reads.
pub fn supported(linktype: u32) -> bool {
    matches!(
        linktype,
        0 | 1 | 12 | 14 | 101 | 108 | 113 | 228 | 229 | 276
    )
}

/// An IPv4 or IPv6 address as raw bytes (4 or 16 of them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Addr {
    pub len: u8,
    pub bytes: [u8; 16],
}

impl Addr {
    pub fn new(raw: &[u8]) -> Addr {
        let mut bytes = [0u8; 16];
        bytes[..raw.len()].copy_from_slice(raw);
        Addr {
            len: raw.len() as u8,
            bytes,
        }
    }

    pub fn raw(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Text as `inet_ntop` writes it (IPv6 compressed, embedded IPv4 dotted).
    pub fn text(&self) -> String {
        let b = self.raw();
        if b.len() == 4 {
            return format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
        }
        let w: Vec<u16> = (0..8)
            .map(|i| u16::from_be_bytes([b[2 * i], b[2 * i + 1]]))
            .collect();
        // the longest run of zero words (at least two), the first one on ties
        let (mut best, mut best_len, mut cur, mut cur_len) = (usize::MAX, 0, 0, 0);
        for (i, &x) in w.iter().enumerate() {
            if x == 0 {
                if cur_len == 0 {
                    cur = i;
                }
                cur_len += 1;
                if cur_len > best_len {
                    best = cur;
                    best_len = cur_len;
                }
            } else {
                cur_len = 0;
            }
        }
        if best_len < 2 {
            best = usize::MAX;
        }
        let mut s = String::new();
        let mut i = 0;
        while i < 8 {
            if i == best {
                s.push(':');
                if i == 0 {
                    s.push(':');
                }
                i += best_len;
                continue;
            }
            if i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
                s.push_str(&format!("{}.{}.{}.{}", b[12], b[13], b[14], b[15]));
                break;
            }
            s.push_str(&format!("{:x}", w[i]));
            if i < 7 {
                s.push(':');
            }
            i += 1;
        }
        if s.ends_with(':') && !s.ends_with("::") {
            s.pop();
        }
        s
    }
}

/// What the link layer says: where the network layer starts and its ethertype (after
/// `decode_network`: the innermost one's), and the MACs and VLAN of the innermost
/// Ethernet header.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub off: usize,
    pub ethertype: u16,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    pub vlan: i32,
}

#[inline]
fn mac(b: &[u8], off: usize) -> Option<[u8; 6]> {
    b.get(off..off + 6)?.try_into().ok()
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn raw_ip(b: &[u8], off: usize) -> u16 {
    match b[off] >> 4 {
        4 => 0x0800,
        6 => 0x86DD,
        _ => 0,
    }
}

/// An Ethernet header at `start` (with its 802.1Q/802.1ad tags).
#[inline]
fn ethernet(b: &[u8], start: usize) -> Option<Link> {
    let end = b.len();
    if end < start + 14 {
        return None;
    }
    let mut etype = be16(b, start + 12);
    let mut off = start + 14;
    let mut vlan = -1;
    while matches!(etype, 0x8100 | 0x88A8 | 0x9100 | 0x9200) && off + 4 <= end {
        if vlan < 0 {
            vlan = (be16(b, off) & 0x0FFF) as i32;
        }
        etype = be16(b, off + 2);
        off += 4;
    }
    Some(Link {
        off,
        ethertype: etype,
        src_mac: mac(b, start + 6),
        dst_mac: mac(b, start),
        vlan,
    })
}

#[inline]
pub fn decode_link(linktype: u32, b: &[u8]) -> Option<Link> {
    let end = b.len();
    match linktype {
        LINKTYPE_ETHERNET => ethernet(b, 0),
        LINKTYPE_RAW | 12 | 14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            if end == 0 {
                return None;
            }
            Some(Link {
                off: 0,
                ethertype: raw_ip(b, 0),
                src_mac: None,
                dst_mac: None,
                vlan: -1,
            })
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            if end < 5 {
                return None;
            }
            let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let mut fam = if linktype == LINKTYPE_LOOP {
                be32(b, 0)
            } else {
                le
            };
            if fam > 0xFFFF {
                fam = be32(b, 0);
            }
            let etype = match fam {
                2 => 0x0800,
                10 | 24 | 28 | 30 => 0x86DD,
                _ => return None,
            };
            Some(Link {
                off: 4,
                ethertype: etype,
                src_mac: None,
                dst_mac: None,
                vlan: -1,
            })
        }
        LINKTYPE_SLL => {
            if end < 16 {
                return None;
            }
            Some(Link {
                off: 16,
                ethertype: be16(b, 14),
                src_mac: if be16(b, 4) == 6 { mac(b, 6) } else { None },
                dst_mac: None,
                vlan: -1,
            })
        }
        LINKTYPE_SLL2 => {
            if end < 20 {
                return None;
            }
            Some(Link {
                off: 20,
                ethertype: be16(b, 0),
                src_mac: if b[11] == 6 { mac(b, 12) } else { None },
                dst_mac: None,
                vlan: -1,
            })
        }
        _ => None,
    }
}

/// A TCP or UDP packet, with where its payload lies in the frame.
pub struct Transport {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// the receive window (TCP; 0 for UDP)
    pub window: u16,
    pub pstart: usize,
    pub pend: usize,
}

/// Why a packet is not a TCP/UDP packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NotTransport {
    NotIp,
    Invalid,
    Fragment,
    OtherIp,
    Arp(usize),
}

/// An IP header: its addresses, the protocol it carries and where that lies.
struct Ip {
    src: Addr,
    dst: Addr,
    proto: u8,
    off: usize,
    end: usize,
}

#[inline]
fn ip_header(b: &[u8], off: usize, ethertype: u16) -> Result<Ip, NotTransport> {
    let mut end = b.len();
    let mut off = off;
    let (proto, src, dst);
    if ethertype == 0x0800 {
        if end < off + 20 {
            return Err(NotTransport::Invalid);
        }
        let vihl = b[off];
        let ihl = ((vihl & 0x0F) as usize) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return Err(NotTransport::Invalid);
        }
        let total = be16(b, off + 2) as usize;
        if total >= ihl && off + total < end {
            end = off + total;
        }
        if be16(b, off + 6) & 0x3FFF != 0 {
            return Err(NotTransport::Fragment);
        }
        proto = b[off + 9];
        src = Addr::new(&b[off + 12..off + 16]);
        dst = Addr::new(&b[off + 16..off + 20]);
        off += ihl;
    } else if ethertype == 0x86DD {
        if end < off + 40 {
            return Err(NotTransport::Invalid);
        }
        let plen = be16(b, off + 4) as usize;
        let mut p = b[off + 6];
        src = Addr::new(&b[off + 8..off + 24]);
        dst = Addr::new(&b[off + 24..off + 40]);
        if plen != 0 && off + 40 + plen < end {
            end = off + 40 + plen;
        }
        off += 40;
        while matches!(p, 0 | 43 | 60 | 44) {
            if off + 8 > end {
                return Err(NotTransport::Invalid);
            }
            if p == 44 {
                // an atomic fragment (offset 0, no more) is the whole datagram
                if be16(b, off + 2) & 0xFFF9 != 0 {
                    return Err(NotTransport::Fragment);
                }
                p = b[off];
                off += 8;
            } else {
                let hlen = (b[off + 1] as usize + 1) * 8;
                p = b[off];
                off += hlen;
            }
        }
        proto = p;
    } else {
        return Err(NotTransport::Invalid);
    }
    Ok(Ip {
        src,
        dst,
        proto,
        off,
        end,
    })
}

#[inline]
fn transport(b: &[u8], ip: Ip) -> Result<Transport, NotTransport> {
    let Ip {
        src,
        dst,
        proto,
        off,
        mut end,
    } = ip;
    if proto == TCP {
        if end < off + 20 {
            return Err(NotTransport::Invalid);
        }
        let hl = ((b[off + 12] >> 4) as usize) * 4;
        if hl < 20 {
            return Err(NotTransport::Invalid);
        }
        let start = off + hl;
        return Ok(Transport {
            src,
            dst,
            proto,
            sport: be16(b, off),
            dport: be16(b, off + 2),
            seq: be32(b, off + 4),
            ack: be32(b, off + 8),
            flags: b[off + 13],
            window: be16(b, off + 14),
            pstart: start.min(end),
            pend: end,
        });
    }
    if proto == UDP {
        if end < off + 8 {
            return Err(NotTransport::Invalid);
        }
        let ulen = be16(b, off + 4) as usize;
        if ulen >= 8 && off + ulen < end {
            end = off + ulen;
        }
        return Ok(Transport {
            src,
            dst,
            proto,
            sport: be16(b, off),
            dport: be16(b, off + 2),
            seq: 0,
            ack: 0,
            flags: 0,
            window: 0,
            pstart: off + 8,
            pend: end,
        });
    }
    Err(NotTransport::OtherIp)
}

/// The IP packet at `off` down to its TCP or UDP header (no tunnels opened).
pub fn decode_ip(b: &[u8], off: usize, ethertype: u16) -> Result<Transport, NotTransport> {
    transport(b, ip_header(b, off, ethertype)?)
}

/// Tunnels and label stacks opened, at most.
const MAX_LAYERS: usize = 8;
pub const VXLAN_PORT: u16 = 4789;
const GRE: u8 = 47;
const IPIP: u8 = 4;
const IPV6_IN_IP: u8 = 41;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MULTICAST: u16 = 0x8848;
const ETH_NSH: u16 = 0x894F;
const ETH_BRIDGED: u16 = 0x6558;
const ETH_ERSPAN_2: u16 = 0x88BE;
const ETH_ERSPAN_3: u16 = 0x22EB;
/// what an inner Ethernet header is called here (not a real ethertype)
const INNER_ETHERNET: u16 = 1;

/// The layer after `link.off` until TCP or UDP: tunnels are opened, `link` ends on the
/// innermost network header (on a fragment: the fragment's IP header) and carries the
/// innermost Ethernet header's MACs and VLAN.
#[inline]
pub fn decode_network(b: &[u8], link: &mut Link) -> Result<Transport, NotTransport> {
    // the common case, plain IP with TCP or UDP, without a call
    if matches!(link.ethertype, ETH_IPV4 | ETH_IPV6) {
        let ip = ip_header(b, link.off, link.ethertype)?;
        if ip.proto == TCP {
            return transport(b, ip);
        }
        if ip.proto == UDP {
            let t = transport(b, ip)?;
            if t.dport != VXLAN_PORT {
                return Ok(t);
            }
        }
    }
    tunnels(b, link)
}

/// `decode_network` through tunnels.
#[inline(never)]
fn tunnels(b: &[u8], link: &mut Link) -> Result<Transport, NotTransport> {
    for _ in 0..MAX_LAYERS {
        let (off, et) = (link.off, link.ethertype);
        let next = match et {
            ETH_IPV4 | ETH_IPV6 => {
                let ip = ip_header(b, off, et)?;
                match ip.proto {
                    GRE => gre(b, ip.off, ip.end),
                    IPIP => Some((ip.off, ETH_IPV4)),
                    IPV6_IN_IP => Some((ip.off, ETH_IPV6)),
                    _ => {
                        let t = transport(b, ip)?;
                        match vxlan(b, &t) {
                            Some(inner) => Some(inner),
                            None => return Ok(t),
                        }
                    }
                }
                .ok_or(NotTransport::OtherIp)?
            }
            ETH_MPLS | ETH_MPLS_MULTICAST => mpls(b, off).ok_or(NotTransport::NotIp)?,
            ETH_NSH => nsh(b, off).ok_or(NotTransport::NotIp)?,
            INNER_ETHERNET => {
                let inner = ethernet(b, off).ok_or(NotTransport::NotIp)?;
                link.src_mac = inner.src_mac;
                link.dst_mac = inner.dst_mac;
                if inner.vlan >= 0 {
                    link.vlan = inner.vlan;
                }
                (inner.off, inner.ethertype)
            }
            _ => return Err(NotTransport::NotIp),
        };
        link.off = next.0;
        link.ethertype = match next.1 {
            ETH_BRIDGED => INNER_ETHERNET,
            other => other,
        };
    }
    Err(NotTransport::Invalid)
}

/// GRE (version 0) at `off`: where its payload starts and what it is.
fn gre(b: &[u8], off: usize, end: usize) -> Option<(usize, u16)> {
    if end < off + 4 || end > b.len() {
        return None;
    }
    let flags = be16(b, off);
    if flags & 0x4007 != 0 {
        return None; // source routing, or not version 0 (PPTP's enhanced GRE)
    }
    let proto = be16(b, off + 2);
    let mut p = off + 4;
    for bit in [0x8000u16, 0x2000] {
        if flags & bit != 0 {
            p += 4; // checksum, key
        }
    }
    let sequenced = flags & 0x1000 != 0;
    if sequenced {
        p += 4;
    }
    if p > end {
        return None;
    }
    match proto {
        ETH_ERSPAN_2 if !sequenced => Some((p, INNER_ETHERNET)), // type I: no header
        ETH_ERSPAN_2 => {
            if p + 8 > end || b[p] >> 4 != 1 {
                return None;
            }
            Some((p + 8, INNER_ETHERNET))
        }
        ETH_ERSPAN_3 => {
            if p + 12 > end || b[p] >> 4 != 2 {
                return None;
            }
            let frame_type = (b[p + 10] >> 2) & 0x1F;
            let sub = if b[p + 11] & 1 != 0 { 8 } else { 0 };
            (frame_type == 0).then_some((p + 12 + sub, INNER_ETHERNET))
        }
        ETH_BRIDGED => Some((p, INNER_ETHERNET)),
        _ => Some((p, proto)),
    }
}

/// A VXLAN packet (UDP to port 4789, "I" flag set): its inner Ethernet frame.
#[inline]
fn vxlan(b: &[u8], t: &Transport) -> Option<(usize, u16)> {
    if t.proto != UDP || t.dport != VXLAN_PORT || t.pend < t.pstart + 8 + 14 {
        return None;
    }
    (b[t.pstart] & 0x08 != 0).then_some((t.pstart + 8, INNER_ETHERNET))
}

/// An MPLS label stack at `off`: what follows its bottom label (IPv4 or IPv6 by their
/// version, or Ethernet behind a pseudowire control word).
fn mpls(b: &[u8], off: usize) -> Option<(usize, u16)> {
    let mut p = off;
    for _ in 0..MAX_LAYERS {
        if p + 4 > b.len() {
            return None;
        }
        let bottom = b[p + 2] & 1 != 0;
        p += 4;
        if bottom {
            return match b.get(p)? >> 4 {
                4 => Some((p, ETH_IPV4)),
                6 => Some((p, ETH_IPV6)),
                0 => Some((p + 4, INNER_ETHERNET)),
                _ => None,
            };
        }
    }
    None
}

/// A network service header at `off`: what it carries.
fn nsh(b: &[u8], off: usize) -> Option<(usize, u16)> {
    if off + 8 > b.len() || b[off] >> 6 != 0 {
        return None;
    }
    let len = (be16(b, off) & 0x3F) as usize * 4;
    if len < 8 {
        return None;
    }
    let next = match b[off + 3] {
        1 => ETH_IPV4,
        2 => ETH_IPV6,
        3 => INNER_ETHERNET,
        5 => ETH_MPLS,
        _ => return None,
    };
    Some((off + len, next))
}

/// Link, tunnel, IP and transport headers of one frame.
#[inline]
pub fn decode_frame(linktype: u32, b: &[u8]) -> Result<(Link, Transport), NotTransport> {
    let mut link = decode_link(linktype, b).ok_or(NotTransport::NotIp)?;
    if link.ethertype == 0x0806 {
        return Err(NotTransport::Arp(link.off));
    }
    let t = decode_network(b, &mut link)?;
    Ok((link, t))
}

/// Sender (MAC, IPv4 address) of an Ethernet/IPv4 ARP packet.
pub fn decode_arp(b: &[u8], off: usize) -> Option<([u8; 6], [u8; 4])> {
    if b.len() < off + 28 || b[off + 4] != 6 || b[off + 5] != 4 {
        return None;
    }
    let mac: [u8; 6] = b[off + 8..off + 14].try_into().ok()?;
    let ip: [u8; 4] = b[off + 14..off + 18].try_into().ok()?;
    Some((mac, ip))
}

/// ECS form of a MAC: upper-case, hyphen separated.
pub fn mac_text(mac: &[u8]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02X}")).collect();
    parts.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> String {
        let a: std::net::Ipv6Addr = s.parse().unwrap();
        Addr::new(&a.octets()).text()
    }

    /// An IPv4 header (no options) around `payload`.
    pub fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x45, 0];
        v.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(payload);
        v
    }

    /// A TCP header (PSH, ACK) from `sport` to `dport` around `payload`.
    pub fn tcp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = sport.to_be_bytes().to_vec();
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1, 0x50, 0x18, 0x20, 0, 0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    fn eth(dst: u8, src: u8, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0x80, 0xF4, 0, 0, dst, 0, 0x0C, 0x29, 0, 0, src];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    const WRITE: [u8; 12] = [0, 1, 0, 0, 0, 6, 1, 6, 0, 10, 0, 42];

    fn inner() -> Vec<u8> {
        ipv4(
            TCP,
            [10, 0, 0, 20],
            [10, 0, 0, 10],
            &tcp(40000, 502, &WRITE),
        )
    }

    /// The frame decodes to the inner Modbus write, from 10.0.0.20 to 10.0.0.10:502.
    fn the_write(frame: &[u8]) -> Link {
        let (link, t) = decode_frame(LINKTYPE_ETHERNET, frame).expect("decodes");
        assert_eq!(
            (t.src.text(), t.dst.text()),
            ("10.0.0.20".into(), "10.0.0.10".into())
        );
        assert_eq!((t.sport, t.dport), (40000, 502));
        assert_eq!(&frame[t.pstart..t.pend], &WRITE);
        link
    }

    fn outer_ip(proto: u8, payload: &[u8]) -> Vec<u8> {
        ipv4(proto, [192, 168, 1, 1], [192, 168, 1, 2], payload)
    }

    #[test]
    fn tunnels_are_opened_down_to_the_inner_packet() {
        let ip = inner();
        let ether = eth(10, 20, 0x0800, &ip);
        // MPLS: two labels, then IPv4; a pseudowire carrying Ethernet
        let mut mpls = vec![0, 0x64, 0x00, 64, 0, 0xC8, 0x01, 64];
        mpls.extend_from_slice(&ip);
        the_write(&eth(1, 2, 0x8847, &mpls));
        let mut pw = vec![0, 0x64, 0x01, 64, 0, 0, 0, 0];
        pw.extend_from_slice(&ether);
        assert_eq!(the_write(&eth(1, 2, 0x8847, &pw)).src_mac.unwrap()[5], 20);
        // GRE with IPv4, with a key and Ethernet, with MPLS
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend_from_slice(&ip);
        the_write(&eth(1, 2, 0x0800, &outer_ip(47, &gre)));
        let mut gre = vec![0x20, 0, 0x65, 0x58, 0, 0, 0, 7];
        gre.extend_from_slice(&ether);
        the_write(&eth(1, 2, 0x0800, &outer_ip(47, &gre)));
        let mut gre = vec![0, 0, 0x88, 0x47];
        gre.extend_from_slice(&mpls);
        the_write(&eth(1, 2, 0x0800, &outer_ip(47, &gre)));
        // ERSPAN type II (sequenced GRE) and type III (with its platform subheader)
        let mut e2 = vec![0x10, 0, 0x88, 0xBE, 0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0];
        e2.extend_from_slice(&ether);
        let link = the_write(&eth(1, 2, 0x0800, &outer_ip(47, &e2)));
        assert_eq!(link.dst_mac.unwrap()[5], 10);
        let mut e3 = vec![0x10, 0, 0x22, 0xEB, 0, 0, 0, 1, 0x20, 0, 0, 1, 0, 0, 0, 0];
        e3.extend_from_slice(&[0, 0, 0, 1]);
        e3.extend_from_slice(&[0; 8]);
        e3.extend_from_slice(&ether);
        the_write(&eth(1, 2, 0x0800, &outer_ip(47, &e3)));
        // VXLAN: the inner Ethernet's MACs and VLAN are the flow's
        let tagged = {
            let mut v = ether[..12].to_vec();
            v.extend_from_slice(&[0x81, 0, 0, 42, 0x08, 0]);
            v.extend_from_slice(&ip);
            v
        };
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&tagged);
        let mut udp = 50000u16.to_be_bytes().to_vec();
        udp.extend_from_slice(&VXLAN_PORT.to_be_bytes());
        udp.extend_from_slice(&((8 + vx.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&vx);
        let link = the_write(&eth(1, 2, 0x0800, &outer_ip(UDP, &udp)));
        assert_eq!((link.src_mac.unwrap()[5], link.vlan), (20, 42));
        // NSH (MD type 2, no metadata) carrying IPv4; IP in IP
        let mut nsh = vec![0x0F, 0xC2, 0x02, 0x01, 0, 0, 1, 0xFF];
        nsh.extend_from_slice(&ip);
        the_write(&eth(1, 2, 0x894F, &nsh));
        the_write(&eth(1, 2, 0x0800, &outer_ip(4, &ip)));
    }

    #[test]
    fn broken_tunnels_are_counted_not_followed() {
        let ip = inner();
        // PPTP's enhanced GRE (version 1), a label stack without a bottom, VXLAN without
        // its flag: none is opened
        let mut gre = vec![0x30, 0x01, 0x88, 0x0B];
        gre.extend_from_slice(&ip);
        let frame = eth(1, 2, 0x0800, &outer_ip(47, &gre));
        assert_eq!(decode_frame(1, &frame).err(), Some(NotTransport::OtherIp));
        let frame = eth(1, 2, 0x8847, &[0, 0x64, 0, 64, 0, 0x64, 0, 64]);
        assert_eq!(decode_frame(1, &frame).err(), Some(NotTransport::NotIp));
        // a first fragment is a fragment (its datagram is put together by defrag)
        let mut frag = ip.clone();
        frag[6] = 0x20;
        assert_eq!(
            decode_frame(1, &eth(1, 2, 0x0800, &frag)).err(),
            Some(NotTransport::Fragment)
        );
        // tunnels in tunnels end after a few layers
        let mut deep = ip.clone();
        for _ in 0..10 {
            deep = outer_ip(4, &deep);
        }
        assert_eq!(
            decode_frame(1, &eth(1, 2, 0x0800, &deep)).err(),
            Some(NotTransport::Invalid)
        );
    }

    #[test]
    fn ipv6_text_like_inet_ntop() {
        assert_eq!(v6("2001:db8::1"), "2001:db8::1");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("fe80::"), "fe80::");
        assert_eq!(v6("::ffff:10.0.0.1"), "::ffff:10.0.0.1");
        assert_eq!(v6("::10.0.0.1"), "::10.0.0.1");
        assert_eq!(v6("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(v6("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
    }
}
