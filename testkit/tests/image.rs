//! Lab containers from a real OCI image: containerd stores the image under
//! the digest the lab computed, runs containers on snapshots of it, and
//! nothing of either is left after the lab.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::Path;

use tracelake_testkit::lab::{ContainerSpec, IMAGE_REF, Lab, lab_available};

fn ctr(lab: &Lab, args: &[&str]) -> String {
    let out = lab.ctr().args(args).output().unwrap();
    assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn exec_ok(c: &tracelake_testkit::lab::Container, id: &str, args: &[&str]) -> String {
    let out = c.exec(id, args).unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn containers_from_the_lab_image_carry_its_name_and_digest() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let a = lab.run(&ContainerSpec::new("img-a", ["sleep", "60"]).image().label("k", "v").env("GREETING=hi")).unwrap();
    let image = lab.image().unwrap();
    assert_eq!(image.reference, IMAGE_REF);
    assert!(image.digest.starts_with("sha256:") && image.digest.len() == 71, "{image:?}");

    // containerd's own account: name, target digest, and the content behind it.
    let list = ctr(&lab, &["images", "ls"]);
    let row = list.lines().find(|l| l.starts_with(IMAGE_REF)).unwrap_or_else(|| panic!("{IMAGE_REF} in {list}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[0], IMAGE_REF, "{row}");
    assert!(cols.contains(&"application/vnd.oci.image.manifest.v1+json"), "{row}");
    assert!(cols.contains(&image.digest.as_str()), "containerd's digest is the lab's: {row}");
    let manifest = ctr(&lab, &["content", "get", &image.digest]);
    assert!(manifest.contains(&image.config_digest) && manifest.contains(&image.layer_digest), "{manifest}");
    let config = ctr(&lab, &["content", "get", &image.config_digest]);
    assert!(config.contains(&format!(r#""diff_ids":["{}"]"#, image.layer_digest)), "{config}");

    // The container records the image, and runs on a snapshot of it.
    let info = ctr(&lab, &["containers", "info", "img-a"]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Image"], IMAGE_REF);
    assert_eq!(info["Labels"]["k"], "v");
    assert_eq!(info["Snapshotter"], "overlayfs");
    assert_eq!(info["SnapshotKey"], "img-a");
    assert!(ctr(&lab, &["snapshots", "ls"]).lines().any(|l| l.starts_with("img-a ")));
    assert_eq!(exec_ok(&a, "env", &["sh", "-c", "echo $GREETING:$PATH"]), "hi:/bin:/sbin:/usr/bin:/usr/sbin\n");
    assert_eq!(exec_ok(&a, "ls", &["ls", "/bin/busybox"]), "/bin/busybox\n");

    // rootfs() is the snapshot's mount: a file written there is seen inside, and only by this container.
    let b = lab.run(&ContainerSpec::new("img-b", ["sleep", "60"]).image()).unwrap();
    assert_eq!(lab.image().unwrap(), image, "imported once");
    fs::write(a.rootfs().join("tmp/marker"), "x").unwrap();
    assert_eq!(exec_ok(&a, "marker", &["cat", "/tmp/marker"]), "x");
    assert!(!b.exec("marker", &["cat", "/tmp/marker"]).unwrap().status.success(), "snapshots are per container");
    let (pid, cgroup) = (a.pid(), a.cgroup_path().to_path_buf());
    assert!(cgroup.ends_with(format!("{}/img-a", lab.namespace())), "{}", cgroup.display());
    assert_eq!(fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(), "sleep\n");

    // Stopping removes the snapshot with the container.
    a.stop().unwrap();
    assert!(!ctr(&lab, &["snapshots", "ls"]).lines().any(|l| l.starts_with("img-a ")));
    assert!(!cgroup.exists());

    // Dropping the lab with a container still running leaves no mount and no dir behind.
    let root = lab.address().parent().unwrap().to_path_buf();
    drop(b);
    let c = lab.run(&ContainerSpec::new("img-c", ["sleep", "60"]).image()).unwrap();
    std::mem::forget(c);
    drop(lab);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()), "lab mounts left:\n{mounts}");
    assert!(!Path::new(&root).exists(), "{} removed", root.display());
}
