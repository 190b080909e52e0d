//! A rule: one `.sql` file whose leading `-- key: value` comments are its
//! metadata (docs/detections.md). Parsing never panics; every error names
//! the file and the line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracelake_sinks::parquet::Table;

/// Tactics of the Microsoft Threat Matrix for Kubernetes.
pub const TACTICS: [&str; 10] = [
    "Initial access",
    "Execution",
    "Persistence",
    "Privilege escalation",
    "Defense evasion",
    "Credential access",
    "Discovery",
    "Lateral movement",
    "Collection",
    "Impact",
];

/// OCSF severities, in `severity_id` order (1..=5).
pub const SEVERITIES: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// Header keys, in the order docs/detections.md lists them.
const KEYS: [&str; 12] = [
    "id",
    "title",
    "severity",
    "tactic",
    "technique",
    "mitre",
    "tables",
    "description",
    "false_positives",
    "suppress",
    "window",
    "dedup",
];

/// A rule file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct RuleError {
    pub file: PathBuf,
    /// 1-based line the problem is on (0: the file as a whole).
    pub line: usize,
    pub message: String,
}

impl RuleError {
    pub fn new(file: &Path, line: usize, message: impl Into<String>) -> RuleError {
        RuleError { file: file.to_path_buf(), line, message: message.into() }
    }
}

/// A parsed rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Where it came from (`builtin:<name>` for embedded rules).
    pub file: PathBuf,
    pub id: String,
    pub title: String,
    pub severity: String,
    /// 1 (informational) .. 5 (critical), OCSF.
    pub severity_id: i32,
    /// Microsoft Threat Matrix for Kubernetes tactic.
    pub tactic: String,
    /// Its technique in that matrix.
    pub technique: String,
    /// MITRE ATT&CK technique id (T1234 or T1234.001).
    pub mitre: String,
    /// Lake tables the SQL reads.
    pub tables: Vec<Table>,
    pub description: String,
    pub false_positives: String,
    /// A finding for the same rule, container (or workload) and key is not repeated within this.
    pub suppress: Duration,
    /// Live evaluation sees the batches of this long ago (windowed aggregates); zero: each batch once.
    pub window: Duration,
    /// Output column whose value, with the container, is the deduplication key (default `exe`).
    pub dedup: String,
    /// The query, without the header.
    pub sql: String,
    /// Line of the file the SQL starts on, so SQL errors can point into the file.
    pub sql_line: usize,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {} ({} / {}, {})",
            self.id, self.severity, self.title, self.tactic, self.technique, self.mitre
        )
    }
}

fn duration(file: &Path, line: usize, key: &str, v: &str) -> Result<Duration, RuleError> {
    humantime::parse_duration(v)
        .map_err(|e| RuleError::new(file, line, format!("{key}: {v:?} is not a duration ({e})")))
}

fn mitre_ok(v: &str) -> bool {
    let b = v.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

impl Rule {
    /// Parses a rule file's text. `file` only names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Rule, RuleError> {
        let mut values: [Option<(usize, String)>; KEYS.len()] = Default::default();
        let mut sql_line = 0;
        let mut last_key: Option<usize> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let t = line.trim();
            if t.is_empty() {
                last_key = None;
                continue;
            }
            let Some(comment) = t.strip_prefix("--") else {
                sql_line = n;
                break;
            };
            let comment = comment.trim();
            // `--   more text` continues the previous key's value (long descriptions).
            if let Some(k) = last_key
                && line.trim_start().strip_prefix("--").is_some_and(|c| c.starts_with("   "))
            {
                if let Some((_, v)) = &mut values[k] {
                    v.push(' ');
                    v.push_str(comment);
                }
                continue;
            }
            let Some((key, value)) = comment.split_once(':') else {
                last_key = None;
                continue;
            };
            let key = key.trim();
            if key.contains(' ') {
                // Prose in a comment, not a header key.
                last_key = None;
                continue;
            }
            let Some(k) = KEYS.iter().position(|&x| x == key) else {
                return Err(RuleError::new(
                    file,
                    n,
                    format!("unknown header key {key:?} (known: {})", KEYS.join(", ")),
                ));
            };
            if values[k].is_some() {
                return Err(RuleError::new(file, n, format!("header key {key:?} given twice")));
            }
            values[k] = Some((n, value.trim().to_string()));
            last_key = Some(k);
        }
        if sql_line == 0 {
            return Err(RuleError::new(file, text.lines().count().max(1), "no SQL after the header"));
        }
        let sql: String = text.lines().skip(sql_line - 1).collect::<Vec<_>>().join("\n");
        let mut take = |key: &str, required: bool| -> Result<Option<(usize, String)>, RuleError> {
            let k = KEYS.iter().position(|&x| x == key).unwrap_or(0);
            match values[k].take() {
                Some((n, v)) if v.is_empty() => Err(RuleError::new(file, n, format!("{key}: empty value"))),
                Some(v) => Ok(Some(v)),
                None if required => Err(RuleError::new(file, 1, format!("header key {key:?} missing"))),
                None => Ok(None),
            }
        };
        let req = |v: Option<(usize, String)>| v.unwrap_or_default();
        let (_, id) = req(take("id", true)?);
        let (_, title) = req(take("title", true)?);
        let (sev_line, severity) = req(take("severity", true)?);
        let severity = severity.to_ascii_lowercase();
        let Some(sev) = SEVERITIES.iter().position(|&s| s == severity) else {
            return Err(RuleError::new(
                file,
                sev_line,
                format!("severity {severity:?} is not one of {}", SEVERITIES.join(", ")),
            ));
        };
        let (tac_line, tactic) = req(take("tactic", true)?);
        let Some(tactic) = TACTICS.iter().find(|t| t.eq_ignore_ascii_case(&tactic)) else {
            return Err(RuleError::new(
                file,
                tac_line,
                format!(
                    "tactic {tactic:?} is not a tactic of the Threat Matrix for Kubernetes ({})",
                    TACTICS.join(", ")
                ),
            ));
        };
        let (_, technique) = req(take("technique", true)?);
        let (mitre_line, mitre) = req(take("mitre", true)?);
        if !mitre_ok(&mitre) {
            return Err(RuleError::new(
                file,
                mitre_line,
                format!("mitre {mitre:?} is not an ATT&CK id (T1234 or T1234.001)"),
            ));
        }
        let (tables_line, tables_text) = req(take("tables", true)?);
        let mut tables = Vec::new();
        for name in tables_text.split(',').map(str::trim) {
            match Table::from_name(name) {
                Some(t) if Table::EVENT_TABLES.contains(&t) => tables.push(t),
                _ => {
                    let known: Vec<_> = Table::EVENT_TABLES.iter().map(|t| t.name()).collect();
                    return Err(RuleError::new(
                        file,
                        tables_line,
                        format!("tables: {name:?} is not an event table ({})", known.join(", ")),
                    ));
                }
            }
        }
        let (_, description) = req(take("description", true)?);
        let (_, false_positives) = req(take("false_positives", true)?);
        let (sup_line, sup) = req(take("suppress", true)?);
        let suppress = duration(file, sup_line, "suppress", &sup)?;
        let window = match take("window", false)? {
            Some((n, v)) => {
                let w = duration(file, n, "window", &v)?;
                if w > suppress {
                    return Err(RuleError::new(file, n, "window must not exceed suppress (findings would repeat)"));
                }
                w
            }
            None => Duration::ZERO,
        };
        let dedup = take("dedup", false)?.map_or_else(|| "exe".to_string(), |(_, v)| v);
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(RuleError::new(file, 1, format!("id {id:?}: letters, digits, - and _ only")));
        }
        Ok(Rule {
            file: file.to_path_buf(),
            id,
            title,
            severity,
            severity_id: sev as i32 + 1,
            tactic: (*tactic).to_string(),
            technique,
            mitre,
            tables,
            description,
            false_positives,
            suppress,
            window,
            dedup,
            sql,
            sql_line,
        })
    }

    /// Reads every `*.sql` file of a directory (sorted by name).
    pub fn load_dir(dir: &Path) -> Result<Vec<Result<Rule, RuleError>>, RuleError> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| RuleError::new(dir, 0, format!("cannot read the directory: {e}")))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|p| match std::fs::read(&p) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => Rule::parse(&p, &text),
                    Err(e) => Err(RuleError::new(&p, 0, format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()))),
                },
                Err(e) => Err(RuleError::new(&p, 0, format!("cannot read: {e}"))),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    const GOOD: &str = "-- id: T-1\n-- title: t\n-- severity: High\n-- tactic: execution\n-- technique: x\n\
        -- mitre: T1609\n-- tables: process_activity\n-- description: d\n--   continued\n\
        -- false_positives: none\n-- suppress: 10m\n\nSELECT * FROM process_activity\n";

    #[test]
    fn header_parses_with_continuations() {
        let r = Rule::parse(Path::new("x.sql"), GOOD).unwrap();
        assert_eq!(r.severity_id, 4);
        assert_eq!(r.tactic, "Execution");
        assert_eq!(r.description, "d continued");
        assert_eq!(r.sql_line, 13);
        assert_eq!(r.sql.trim(), "SELECT * FROM process_activity");
        assert_eq!(r.dedup, "exe");
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = GOOD.replace("-- mitre: T1609", "-- mitre: 1609");
        let e = Rule::parse(Path::new("r/x.sql"), &bad).unwrap_err().to_string();
        assert!(e.starts_with("r/x.sql:6: mitre"), "{e}");
        let bad = GOOD.replace("-- tactic: execution", "-- tactic: Exfiltration");
        assert!(Rule::parse(Path::new("x.sql"), &bad).unwrap_err().to_string().starts_with("x.sql:4: tactic"));
        let bad = GOOD.replace("-- suppress: 10m", "-- supress: 10m");
        assert!(
            Rule::parse(Path::new("x.sql"), &bad).unwrap_err().to_string().contains("x.sql:11: unknown header key")
        );
        let bad = GOOD.replace("process_activity\n-- desc", "processes\n-- desc");
        assert!(Rule::parse(Path::new("x.sql"), &bad).unwrap_err().to_string().starts_with("x.sql:7: tables"));
        let bad = GOOD.replace("-- suppress: 10m\n", "-- suppress: 10m\n-- window: 1h\n");
        assert!(Rule::parse(Path::new("x.sql"), &bad).unwrap_err().to_string().starts_with("x.sql:12: window"));
        let bad = GOOD.replace("-- severity: High\n", "");
        assert!(Rule::parse(Path::new("x.sql"), &bad).unwrap_err().to_string().contains("\"severity\" missing"));
    }
}
