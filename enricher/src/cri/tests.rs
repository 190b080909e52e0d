#![allow(clippy::unwrap_used, reason = "test code")]
use std::os::unix::net::UnixListener;

use super::*;

const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn digests_from_repo_digests_and_image_ids_only() {
    let want = Some(format!("sha256:{HEX}"));
    assert_eq!(digest_of(&format!("docker.io/library/nginx@sha256:{HEX}")), want);
    assert_eq!(digest_of(&format!("sha256:{HEX}")), want);
    // A registry port is not a digest separator.
    assert_eq!(digest_of(&format!("registry:5000/app@sha256:{HEX}")), want);
    for no in [
        "docker.io/library/nginx:1.27",
        "",
        "sha256:",
        "sha256:abc",
        &format!("sha512:{HEX}"),
        &format!("sha256:{}", HEX.to_uppercase()),
        &format!("nginx@sha256:{HEX}0"),
    ] {
        assert_eq!(digest_of(no), None, "{no}");
    }
}

#[test]
fn configured_socket_wins_else_the_first_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, sock_a, sock_b) = (dir.path().join("plain"), dir.path().join("a.sock"), dir.path().join("b.sock"));
    std::fs::write(&plain, "").unwrap();
    let _a = UnixListener::bind(&sock_a).unwrap();
    let _b = UnixListener::bind(&sock_b).unwrap();
    let missing = dir.path().join("missing.sock");
    let found = first_socket([missing.clone(), plain, dir.path().to_path_buf(), sock_b.clone(), sock_a]);
    assert_eq!(found, Some(sock_b), "files, directories and missing paths are skipped, order kept");
    assert_eq!(first_socket([missing.clone()]), None);
    assert_eq!(find_socket(Some(&missing)), Some(missing), "configured, even if absent");
}

#[tokio::test]
async fn connect_errors_name_the_socket_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("crio.sock");
    let err = connect(&missing).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(&err, CriError::Connect { socket, .. } if *socket == missing), "{err:?}");
    assert!(text.contains(&missing.display().to_string()) && text.contains("No such file"), "{text}");
}
