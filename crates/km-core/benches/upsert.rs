//! Times one upsert into a 5,000-line config that holds 1,000 managed hosts.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use km_core::ssh_config::{HostEntry, upsert};

fn entry(i: u32) -> HostEntry {
    HostEntry::new(format!("km-sb-{i:08x}"))
        .option("HostName", "127.0.0.1")
        .option("Port", (2222 + i % 1000).to_string())
}

fn main() {
    let mut text: String = (0..2_000)
        .map(|i| format!("Host user{i}\n  Port {i}\n"))
        .collect();
    for i in 0..1_000 {
        text = upsert(&text, &entry(i)).expect("valid config");
    }
    let lines = text.lines().count();
    let mut samples: Vec<f64> = (0..50)
        .map(|i| {
            let start = Instant::now();
            let out = upsert(&text, &entry(500 + i)).expect("valid config");
            std::hint::black_box(out);
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "upsert into {lines} lines / 1000 managed hosts: median {:.3} ms",
        samples[25]
    );
}
