//! Frames of any link type: decoding, flows, reassembly and recognition never panic.
#![no_main]
use _core::engine::{Config, Engine};
use _core::reader::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(Config {
        max_flows: 64,
        threads: data.first().is_some_and(|b| b & 1 == 1), // the record side's two modes
        cross_all: true,
        learn_for: None,
    });
    for (i, frame) in data.split(|&b| b == 0xA5).enumerate() {
        let linktype = [1, 101, 113, 276, 0][i % 5];
        engine.packet(Packet {
            ts: i as f64,
            linktype,
            data: frame,
            wirelen: frame.len() as u32,
        });
    }
    engine.finish();
});
