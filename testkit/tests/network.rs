//! Lab containers with real pod networking (CNI bridge + host-local IPAM in
//! their own network namespaces) reach each other, and everything the lab
//! set up on the host is gone after it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::time::{Duration, Instant};

use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

fn lab() -> Lab {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    Lab::start().expect("Lab::start")
}

fn exec_ok(c: &tracelake_testkit::lab::Container, id: &str, args: &[&str]) -> String {
    let out = c.exec(id, args).unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_subnet(ip: &str, subnet: &str) -> bool {
    let net = subnet.trim_end_matches(".0/24");
    ip.rsplit_once('.').is_some_and(|(prefix, _)| prefix == net)
}

#[test]
fn two_networked_containers_talk_and_cleanup_removes_everything() {
    let lab = lab();
    let (subnet, bridge) = lab.network().unwrap();
    let a = lab.run(&ContainerSpec::new("net-a", ["sleep", "60"]).network()).unwrap();
    let b = lab
        .run(
            &ContainerSpec::new("net-b", ["sh", "-c", "while true; do echo pong-from-b | nc -l -p 8080; done"])
                .network(),
        )
        .unwrap();
    let (ip_a, ip_b) = (a.ip().unwrap().to_string(), b.ip().unwrap().to_string());
    assert_ne!(ip_a, ip_b);
    assert!(in_subnet(&ip_a, &subnet) && in_subnet(&ip_b, &subnet), "{ip_a} {ip_b} in {subnet}");
    // The container's own view of its interface, independent of what CNI returned.
    let addr = exec_ok(&b, "b-addr", &["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {ip_b}/24")), "{addr}");
    assert!(Path::new(&format!("/sys/class/net/{bridge}")).exists(), "bridge {bridge} exists on the host");

    let ping = exec_ok(&a, "a-ping", &["ping", "-c", "1", "-W", "5", &ip_b]);
    assert!(ping.contains("1 packets received"), "{ping}");
    // TCP: B's listener may need a moment to be up.
    let t = Instant::now();
    let reply = loop {
        let out = a.exec(&format!("a-nc-{}", t.elapsed().as_millis()), &["nc", "-w", "2", &ip_b, "8080"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("pong-from-b") || t.elapsed() > Duration::from_secs(15) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(reply.contains("pong-from-b"), "reply {reply:?}");

    // Stopping B frees its namespace and address: a new container can take that very IP.
    let netns_b = b.netns().unwrap().to_path_buf();
    b.stop().unwrap();
    assert!(!netns_b.exists(), "{} removed on stop", netns_b.display());
    let c = lab.run(&ContainerSpec::new("net-c", ["sleep", "60"]).network_ip(ip_b.clone())).unwrap();
    assert_eq!(c.ip(), Some(ip_b.as_str()));
    let addr = exec_ok(&c, "c-addr", &["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {ip_b}/24")), "{addr}");

    let (netns_a, netns_c) = (a.netns().unwrap().to_path_buf(), c.netns().unwrap().to_path_buf());
    // Dropped, not stopped: the way a failing test leaves them.
    drop((a, c));
    assert!(!netns_a.exists() && !netns_c.exists());
    drop(lab);
    assert!(!Path::new(&format!("/sys/class/net/{bridge}")).exists(), "bridge {bridge} removed with the lab");
}

/// Labs running at once (tests run in parallel) get separate bridges and subnets.
#[test]
fn concurrent_labs_do_not_share_networks() {
    let (one, two) = (lab(), lab());
    let (n1, n2) = (one.network().unwrap(), two.network().unwrap());
    assert_ne!(n1.0, n2.0);
    assert_ne!(n1.1, n2.1);
    let x = one.run(&ContainerSpec::new("same-id", ["sleep", "60"]).network()).unwrap();
    let y = two.run(&ContainerSpec::new("same-id", ["sleep", "60"]).network()).unwrap();
    assert!(in_subnet(x.ip().unwrap(), &n1.0) && in_subnet(y.ip().unwrap(), &n2.0));
    assert_ne!(x.netns(), y.netns());
    // A container never removed: the lab's cleanup script removes its namespace and the bridge.
    let (bridge, netns) = (n2.1.clone(), y.netns().unwrap().to_path_buf());
    std::mem::forget(y);
    drop(two);
    assert!(!Path::new(&format!("/sys/class/net/{bridge}")).exists());
    assert!(!netns.exists(), "{}", netns.display());
}
