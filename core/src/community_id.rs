//! Community ID v1 flow hashing (corelight's community-id-spec), so flows join up with
//! Zeek, Suricata and Elastic Agent records.

use crate::decode::Addr;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn community_id(src: &Addr, dst: &Addr, proto: u8, sport: u16, dport: u16) -> String {
    let (a, b, pa, pb) = if (src.raw(), sport) > (dst.raw(), dport) {
        (dst, src, dport, sport)
    } else {
        (src, dst, sport, dport)
    };
    let mut h = sha1_smol::Sha1::new();
    h.update(&[0, 0]);
    h.update(a.raw());
    h.update(b.raw());
    h.update(&[proto, 0]);
    h.update(&pa.to_be_bytes());
    h.update(&pb.to_be_bytes());
    format!("1:{}", base64(&h.digest().bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_example() {
        // community-id-spec baseline: tcp 128.232.110.120:34855 -> 66.35.250.204:80
        let a = Addr::new(&[128, 232, 110, 120]);
        let b = Addr::new(&[66, 35, 250, 204]);
        assert_eq!(
            community_id(&a, &b, 6, 34855, 80),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(&b, &a, 6, 80, 34855),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
    }
}
