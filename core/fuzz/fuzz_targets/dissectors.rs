//! Every dissector on the same bytes, split where the input says, in both directions.
#![no_main]
use _core::protocols::REGISTRY;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let cut = data[0] as usize % data.len();
    for kind in &REGISTRY {
        let mut p = (kind.parser)();
        let mut out = Vec::new();
        p.feed(&data[1..cut.max(1)], true, false, &mut out);
        p.feed(
            &data[cut.max(1)..],
            data[0] & 1 == 0,
            data[0] & 2 == 0,
            &mut out,
        );
        p.feed_datagram(data, false, &mut out);
        let (buffered, pending, partial) = p.held();
        assert!(buffered <= 70_000 && pending <= 512 && partial <= 70_000);
    }
});
