//! What the bus tests share: the NATS they run against (or the rule that
//! they cannot run), a fresh prefix per test, and bounded waits.

#![allow(dead_code)]

use patchline_bus::{Bus, BusConfig, BusPrefix};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Longest wait for anything that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

/// The URL of the NATS server under test, when it is set and reachable;
/// otherwise `not_run` (which fails the test in CI).
pub fn nats_url(test: &str) -> Option<String> {
    patchline_testkit::nats::nats_url(test)
}

/// A prefix no other test (or run) uses.
pub fn fresh_prefix() -> BusPrefix {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    BusPrefix::new(&format!("t{:016x}", h.finish())).expect("valid prefix")
}

/// Test settings: a short lease and short timeouts, so expiry shows fast.
pub fn config(url: &str, prefix: &BusPrefix) -> BusConfig {
    let mut config = BusConfig::new(url, prefix.clone());
    config.lease = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(3);
    config.connect_timeout = Duration::from_secs(3);
    config.client_name = Some("patchline-bus-test".into());
    config
}

pub async fn connect(url: &str, prefix: &BusPrefix) -> Bus {
    Bus::connect(config(url, prefix)).await.expect("connect")
}

/// Deletes a prefix's streams if the test fails before it does (a passing
/// test deletes them itself, through the API under test).
#[derive(Debug)]
pub struct Cleanup {
    pub url: String,
    pub prefix: BusPrefix,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // A runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = tokio::time::timeout(PROMPT, async_nats::connect(url.as_str()))
                    .await
                    .ok()?
                    .ok()?;
                let js = async_nats::jetstream::new(client);
                for name in [prefix.changes_stream(), prefix.work_stream()] {
                    let _ = tokio::time::timeout(PROMPT, js.delete_stream(name)).await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// `fut`, or a panic naming `what` after `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {} ms", limit.as_millis()))
}
