//! Capture files: any bytes behind a pcap or pcapng header, through the whole engine.
#![no_main]
use _core::engine::{Config, Engine};
use _core::reader::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = Reader::from_reader(
        "fuzz".into(),
        Box::new(std::io::Cursor::new(data.to_vec())),
        0,
    ) else {
        return;
    };
    let mut engine = Engine::new(Config {
        max_flows: 1000,
        threads: data.len() % 2 == 1, // the record side on its own thread, or not
        cross_all: true,
        learn_for: None,
    });
    while engine.read(&mut r, 1, &|| false) {}
    engine.finish();
});
