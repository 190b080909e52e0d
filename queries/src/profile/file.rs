//! Profiles as reviewable YAML: loaded at start, written by the node, exported, edited (pin an item, lock a
//! profile) and imported by a SOC, compared with `diff`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Class, Profile, ProfileKey};

/// The file's top level.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    /// Format version, 1.
    version: u32,
    profiles: Vec<Profile>,
}

/// Why a profile file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileFileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{path}: version {version} is not one this tracelake reads (1)")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: profile {key} is listed twice")]
    Duplicate { path: PathBuf, key: ProfileKey },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The profiles of `path`; a missing file is no profiles.
pub fn load(path: &Path) -> Result<Vec<Profile>, ProfileFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ProfileFileError::Read { path: path.to_path_buf(), source }),
    };
    parse(path, &text)
}

/// Profiles from YAML text; errors name the line.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Profile>, ProfileFileError> {
    let file: ProfileFile = serde_yaml::from_str(text).map_err(|e| ProfileFileError::Parse {
        path: path.to_path_buf(),
        line: e.location().map_or(0, |l| l.line()),
        message: e.to_string(),
    })?;
    if file.version != 1 {
        return Err(ProfileFileError::Version { path: path.to_path_buf(), version: file.version });
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &file.profiles {
        if !seen.insert(p.key.clone()) {
            return Err(ProfileFileError::Duplicate { path: path.to_path_buf(), key: p.key.clone() });
        }
    }
    Ok(file.profiles)
}

/// `profiles` as the file's YAML.
pub fn render(profiles: Vec<Profile>) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&ProfileFile { version: 1, profiles })
}

/// Writes `profiles` to `path` whole: a temporary file renamed over it, so a reader never sees half a file.
pub fn save(path: &Path, profiles: Vec<Profile>) -> Result<(), ProfileFileError> {
    let err = |source| ProfileFileError::Write { path: path.to_path_buf(), source };
    let text = render(profiles).map_err(|e| err(std::io::Error::other(e.to_string())))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // Per process: two writers (an agent and `tracelake profile import`) never rename each other's file.
    let tmp = path.with_extension(format!("yaml.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// What `b` has that `a` lacks and the other way round, per profile and class: lines `+ key class item` and
/// `- key class item`, sorted.
pub fn diff(a: &[Profile], b: &[Profile]) -> Vec<String> {
    let mut out = Vec::new();
    let find = |list: &'_ [Profile], k: &ProfileKey| list.iter().find(|p| &p.key == k).cloned();
    let mut keys: Vec<ProfileKey> = a.iter().chain(b).map(|p| p.key.clone()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (pa, pb) = (find(a, &k), find(b, &k));
        for c in Class::ALL {
            let items = |p: &Option<Profile>| p.as_ref().and_then(|p| p.classes.get(&c)).map(|cp| cp.items.clone());
            let (ia, ib) = (items(&pa).unwrap_or_default(), items(&pb).unwrap_or_default());
            for i in ib.difference(&ia) {
                out.push(format!("+ {k} {c:?} {i}"));
            }
            for i in ia.difference(&ib) {
                out.push(format!("- {k} {c:?} {i}"));
            }
        }
        let lock = |p: &Option<Profile>| p.as_ref().is_some_and(|p| p.locked);
        if lock(&pa) != lock(&pb) {
            out.push(format!("{} {k} locked", if lock(&pb) { "+" } else { "-" }));
        }
    }
    out
}
