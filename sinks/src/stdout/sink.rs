use std::io::{self, Write};

use tracelake_model::Event;
use tracelake_model::json::{Identity, JsonContext, write_event_with};

use super::StdoutConfig;

/// Renders events into one reused buffer and writes whole lines.
#[derive(Debug)]
pub struct JsonLinesSink<W: Write> {
    out: W,
    buf: Vec<u8>,
    limit: usize,
    ctx: JsonContext<'static>,
    written: u64,
    /// First write error; later events are counted as lost, not retried.
    error: Option<io::ErrorKind>,
    lost: u64,
}

impl<W: Write> JsonLinesSink<W> {
    pub fn new(out: W, cfg: &StdoutConfig, ctx: JsonContext<'static>) -> Self {
        JsonLinesSink {
            out,
            buf: Vec::with_capacity(cfg.buffer_bytes + 4096),
            limit: cfg.buffer_bytes,
            ctx,
            written: 0,
            error: None,
            lost: 0,
        }
    }

    /// Appends one event; writes out when the buffer is full.
    pub fn push(&mut self, ev: &Event<'_>) {
        self.push_with(ev, &Identity::default());
    }

    /// Appends one event with the identity the enricher resolved for it.
    pub fn push_with(&mut self, ev: &Event<'_>, id: &Identity<'_>) {
        write_event_with(&mut self.buf, &self.ctx, ev, id);
        self.written += 1;
        if self.buf.len() >= self.limit {
            self.flush_buf();
        }
    }

    fn flush_buf(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.error.is_none()
            && let Err(e) = self.out.write_all(&self.buf).and_then(|()| self.out.flush())
        {
            self.error = Some(e.kind());
        }
        if self.error.is_some() {
            self.lost += self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        self.buf.clear();
    }

    /// Writes out everything buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_buf();
        match self.error {
            Some(kind) => Err(io::Error::new(kind, format!("stdout sink: {} events could not be written", self.lost))),
            None => Ok(()),
        }
    }

    /// Events rendered so far (written or lost).
    pub fn rendered(&self) -> u64 {
        self.written
    }

    /// Events that could not be written (closed pipe, full disk).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn into_inner(mut self) -> W {
        self.flush_buf();
        self.out
    }
}
