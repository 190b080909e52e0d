//! `lake/write_steady` for a fixed number of files, for counting instructions: criterion's timed loop runs
//! as many iterations as the clock allows, so its instruction count is not comparable between binaries.
//! Run under callgrind with collection on only inside the timed calls:
//!
//! ```sh
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*lake_steady*one_file*' \
//!     target/release/lake_steady 3
//! ```
//!
//! Without valgrind it prints the CPU time per file and events per second per core (the same figure as the
//! criterion bench, without its statistics).

use std::hint::black_box;

use anyhow::Context;
use tracelake_benches::lake::{EVENTS, cfg, ctx, events, identity, resolved, thread_cpu};
use tracelake_model::json::Identity;
use tracelake_model::{Event, OwnedEvent};
use tracelake_sinks::parquet::LakeSink;

/// The timed part, in a function of its own that callgrind can switch its collection on for.
#[inline(never)]
fn one_file(sink: &mut LakeSink, views: &[Event<'_>], ids: &[Identity<'_>]) -> anyhow::Result<()> {
    for (i, e) in views.iter().enumerate() {
        sink.push_with(black_box(e), &ids[i % 4]);
    }
    sink.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let files: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("usage: lake_steady [FILES]")?,
        None => 3,
    };
    let evs = events();
    let views: Vec<_> = evs.iter().map(OwnedEvent::as_event).collect();
    let answers: Vec<_> = (0..4).map(resolved).collect();
    let ids: Vec<Identity<'_>> = answers.iter().map(identity).collect();
    let shm = tempfile::tempdir_in("/dev/shm").context("/dev/shm")?;
    let mut sink = LakeSink::open(&cfg(shm.path()), ctx())?;
    // The first file is the warm-up (builders and buffers grow to size), as in the criterion bench.
    for file in 0..=files {
        let t0 = thread_cpu();
        one_file(&mut sink, &views, &ids)?;
        let cpu = thread_cpu() - t0;
        if file > 0 {
            println!("file {file}: {:?}, {:.0} K events/s per core", cpu, EVENTS as f64 / cpu.as_secs_f64() / 1e3);
        }
    }
    Ok(())
}
