//! The live path: one block of a TPACKET_V3 receive ring, walked packet by packet.
//!
//! The kernel strips 802.1Q tags into the ring's metadata; they are put back into the
//! frame so that live decoding is exactly the decoding of a capture file.

use crate::reader::Packet;

const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes(s.try_into().unwrap()))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2)
        .map(|s| u16::from_ne_bytes(s.try_into().unwrap()))
}

/// Call `f` for every packet of a retired block; returns how many there were.
pub fn walk_block(block: &[u8], f: &mut dyn FnMut(Packet<'_>)) -> u32 {
    let (Some(num), Some(first)) = (u32_at(block, 12), u32_at(block, 16)) else {
        return 0;
    };
    let mut off = first as usize;
    let mut seen = 0;
    let mut tagged = Vec::new();
    for _ in 0..num {
        let hdr = (|| {
            Some((
                u32_at(block, off)?,
                u32_at(block, off + 4)?,
                u32_at(block, off + 8)?,
                u32_at(block, off + 12)?,
                u32_at(block, off + 16)?,
                u32_at(block, off + 20)?,
                u16_at(block, off + 24)?,
                u32_at(block, off + 32)?,
                u16_at(block, off + 36)?,
            ))
        })();
        let Some((next, sec, nsec, snap, len, status, mac, tci, tpid)) = hdr else {
            break;
        };
        let start = off + mac as usize;
        let Some(data) = block.get(start..start + snap as usize) else {
            break;
        };
        let ts = sec as f64 + nsec as f64 * 1e-9;
        if status & TP_STATUS_VLAN_VALID != 0 && data.len() >= 12 {
            tagged.clear();
            tagged.extend_from_slice(&data[..12]);
            let tpid = if tpid == 0 { 0x8100 } else { tpid };
            tagged.extend_from_slice(&tpid.to_be_bytes());
            tagged.extend_from_slice(&(tci as u16).to_be_bytes());
            tagged.extend_from_slice(&data[12..]);
            f(Packet {
                ts,
                linktype: 1,
                data: &tagged,
                wirelen: len + 4,
            });
        } else {
            f(Packet {
                ts,
                linktype: 1,
                data,
                wirelen: len,
            });
        }
        seen += 1;
        if next == 0 {
            break;
        }
        off += next as usize;
    }
    seen
}
