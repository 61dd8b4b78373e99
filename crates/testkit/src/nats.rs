//! The NATS server of `PATCHLINE_TEST_NATS_URL` (`.ci/test` sets it).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The URL of the NATS server under test, when it is set and reachable;
/// otherwise `None` after [`crate::not_run`] (which fails the test in CI).
pub fn nats_url(test: &str) -> Option<String> {
    let url = std::env::var("PATCHLINE_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        crate::not_run(test, "PATCHLINE_TEST_NATS_URL is not set");
        return None;
    };
    let hostport = url
        .rsplit("://")
        .next()
        .unwrap_or(&url)
        .rsplit('@')
        .next()
        .unwrap_or(&url)
        .to_string();
    let reachable = hostport.to_socket_addrs().ok().is_some_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    });
    if !reachable {
        crate::not_run(
            test,
            &format!("the NATS server of PATCHLINE_TEST_NATS_URL ({hostport}) is unreachable"),
        );
        return None;
    }
    Some(url)
}
