//! A small JSON writer for rendering documents straight from Arrow columns: no intermediate `Value` tree
//! (that tree cost more than the rest of the rendering), objects opened only when a field is written into
//! them, so a row without a parent process gets no empty `"parent":{}`.

use std::fmt::Write as _;

/// Writes one JSON object into a byte buffer.
#[derive(Debug, Default)]
pub struct JsonWriter {
    out: Vec<u8>,
    /// Open objects: their key (`None` for the root) and whether they were written yet.
    stack: Vec<(&'static str, bool)>,
    /// Whether the innermost written object has a member already.
    needs_comma: Vec<bool>,
}

/// Appends `s` as a JSON string (quoted, escaped: quotes, backslashes, every control character).
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    tracelake_model::json::escape_str(out, s);
    out.push(b'"');
}

impl JsonWriter {
    /// A writer with the root object open.
    pub fn new() -> JsonWriter {
        JsonWriter { out: Vec::with_capacity(1024), stack: vec![("", true)], needs_comma: vec![false] }
    }

    /// Starts writing a new document into `out` (its bytes are appended to).
    pub fn start(&mut self, out: Vec<u8>) {
        self.out = out;
        self.stack.clear();
        self.stack.push(("", true));
        self.needs_comma.clear();
        self.needs_comma.push(false);
        self.out.push(b'{');
    }

    /// Closes every open object and hands the bytes back.
    pub fn finish(&mut self) -> Vec<u8> {
        while self.stack.len() > 1 {
            self.end();
        }
        self.out.push(b'}');
        self.stack.clear();
        std::mem::take(&mut self.out)
    }

    /// Opens object `key` lazily: it appears only if something is written into it before `end`.
    pub fn begin(&mut self, key: &'static str) {
        self.stack.push((key, false));
    }

    pub fn end(&mut self) {
        if let Some((_, written)) = self.stack.pop()
            && written
        {
            self.needs_comma.pop();
            self.out.push(b'}');
        }
    }

    /// Writes the keys of pending objects and the comma before a new member.
    fn key(&mut self, key: &str) {
        let first_pending = self.stack.iter().position(|(_, w)| !w).unwrap_or(self.stack.len());
        for i in first_pending..self.stack.len() {
            let name = self.stack[i].0;
            self.comma();
            escape_into(&mut self.out, name);
            self.out.extend_from_slice(b":{");
            self.stack[i].1 = true;
            self.needs_comma.push(false);
        }
        self.comma();
        escape_into(&mut self.out, key);
        self.out.push(b':');
    }

    fn comma(&mut self) {
        if let Some(c) = self.needs_comma.last_mut() {
            if *c {
                self.out.push(b',');
            }
            *c = true;
        }
    }

    pub fn str(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.key(key);
            escape_into(&mut self.out, v);
        }
    }

    pub fn u64(&mut self, key: &str, v: Option<u64>) {
        if let Some(v) = v {
            self.key(key);
            let _ = write!(Fmt(&mut self.out), "{v}");
        }
    }

    pub fn i64(&mut self, key: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.key(key);
            let _ = write!(Fmt(&mut self.out), "{v}");
        }
    }

    /// A number with a fraction (HEC's `time` in seconds).
    pub fn raw_number(&mut self, key: &str, v: &str) {
        self.key(key);
        self.out.extend_from_slice(v.as_bytes());
    }

    pub fn bool(&mut self, key: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.key(key);
            self.out.extend_from_slice(if v { b"true" } else { b"false" });
        }
    }

    /// An array of strings; nothing when empty or absent.
    pub fn strs<'a>(&mut self, key: &str, v: impl IntoIterator<Item = &'a str>) {
        let mut it = v.into_iter().peekable();
        if it.peek().is_none() {
            return;
        }
        self.key(key);
        self.out.push(b'[');
        for (i, s) in it.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            escape_into(&mut self.out, s);
        }
        self.out.push(b']');
    }

    /// An array of numbers; nothing when empty.
    pub fn u64s(&mut self, key: &str, v: impl IntoIterator<Item = u64>) {
        let mut it = v.into_iter().peekable();
        if it.peek().is_none() {
            return;
        }
        self.key(key);
        self.out.push(b'[');
        for (i, n) in it.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let _ = write!(Fmt(&mut self.out), "{n}");
        }
        self.out.push(b']');
    }
}

/// `fmt::Write` over a byte buffer (numbers formatted in place).
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Standard base64 with padding (the exact bytes of non-UTF-8 strings, `*_raw`).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// RFC 3339 UTC with nanoseconds from Unix nanoseconds (`@timestamp`; ES `date_nanos` and `date` take it).
pub fn rfc3339_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The UTC day of Unix nanoseconds as `YYYY.MM.DD` (index names).
pub fn day(ns: i64) -> String {
    let (y, m, d) = civil_from_days(ns.div_euclid(1_000_000_000).div_euclid(86_400));
    format!("{y:04}.{m:02}.{d:02}")
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
