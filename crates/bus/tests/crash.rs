//! Tests on a nats-server of our own (2.10 or later, the binary of
//! `PATCHLINE_TEST_NATS_SERVER`), on a free loopback port and a temporary
//! store. Mainly: a bus server killed with SIGKILL loses nothing it
//! acknowledged (`sync_interval: always`, N acknowledged jobs and changes,
//! restarted on the same store); the bus says it is unavailable while the
//! server is down, and a follower of the change log carries on after the
//! restart. Also: the sync setting the bus reads, and a server without
//! JetStream refused clearly.

mod common;

use common::{PROMPT, fresh_prefix, within};
use patchline_bus::{Bus, BusConfig, SyncSetting};
use patchline_testkit::nats::{NatsServer, server_binary};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const JOBS: usize = 100;
const CHANGES: u64 = 100;

/// Waits until the bus has reconnected, polling its state (bounded).
async fn reconnected(bus: &Bus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bus.is_connected() {
        assert!(Instant::now() < deadline, "no reconnection within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_server_keeps_every_acknowledged_job_and_change() {
    let test = "a_killed_server_keeps_every_acknowledged_job_and_change";
    let Some(binary) = server_binary(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(&binary, dir.path(), Some("sync_interval: always"));

    let mut config = BusConfig::new(server.url(), fresh_prefix());
    config.request_timeout = Duration::from_secs(2);
    config.lease = Duration::from_secs(5);
    let bus = Bus::connect(config).await.expect("connect");
    assert_eq!(
        bus.server().sync,
        SyncSetting::Always,
        "the bus reads the server's sync setting: {:?}",
        bus.server()
    );
    assert!(bus.server().durability_warning().is_none());

    // N acknowledged jobs and changes.
    for i in 0..JOBS {
        bus.publish_job(&format!("job-{i}"), format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    for seq in 1..=CHANGES {
        bus.publish_change(seq, format!("change {seq}").as_bytes())
            .await
            .unwrap();
    }
    // A follower reads the first ten before the crash.
    let mut follower = bus.follow_changes(1);
    for seq in 1..=10 {
        let change = within(PROMPT, "before the crash", follower.next())
            .await
            .unwrap();
        assert_eq!(change.seq, seq);
    }

    server.kill_9();

    // Down: publishing says "unavailable" within the request timeout. (The
    // client may still deliver it after reconnecting: "unavailable" means
    // "not known to be stored", and a re-publish is deduplicated.)
    let started = Instant::now();
    let err = bus.publish_job("during-outage", b"").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains("app-pass"), "{err}");

    server.spawn();
    reconnected(&bus).await;

    // Every acknowledged job is there, once.
    let queued = bus.queued_jobs().await.unwrap();
    assert!(
        queued == JOBS as u64 || queued == JOBS as u64 + 1,
        "{queued} jobs after the restart, {JOBS} acknowledged"
    );
    let mut ids = Vec::new();
    while ids.len() < queued as usize {
        let jobs = bus.claim_jobs(256, PROMPT).await.unwrap();
        assert!(!jobs.is_empty(), "jobs missing: have {}", ids.len());
        for job in jobs {
            ids.push(job.id().to_string());
            job.ack().await.unwrap();
        }
    }
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "a job came twice");
    for i in 0..JOBS {
        assert!(unique.contains(&format!("job-{i}")), "job-{i} was lost");
    }

    // Every acknowledged change is there, and the follower carries on
    // across the restart, into changes published after it.
    bus.publish_change(CHANGES + 1, b"after the restart")
        .await
        .unwrap();
    for seq in 11..=CHANGES + 1 {
        let change = within(PROMPT, "after the restart", follower.next())
            .await
            .unwrap();
        assert_eq!((change.seq, change.missed.is_empty()), (seq, true));
    }
    let mut fresh = bus.follow_changes(1);
    for seq in 1..=CHANGES {
        let change = within(PROMPT, "a new follower", fresh.next())
            .await
            .unwrap();
        assert_eq!(change.seq, seq);
        assert_eq!(change.payload, format!("change {seq}").as_bytes());
    }

    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn a_server_that_syncs_late_is_reported() {
    let Some(binary) = server_binary("a_server_that_syncs_late_is_reported") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&binary, dir.path(), Some("sync_interval: \"2s\""));
    let bus = Bus::connect(BusConfig::new(server.url(), fresh_prefix()))
        .await
        .unwrap();
    assert_eq!(
        bus.server().sync,
        SyncSetting::Interval(Duration::from_secs(2))
    );
    let warning = bus.server().durability_warning().unwrap();
    assert!(
        warning.contains("2000 ms") && warning.contains("sync_interval: always"),
        "{warning}"
    );
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn a_server_without_jetstream_is_refused_clearly() {
    let Some(binary) = server_binary("a_server_without_jetstream_is_refused_clearly") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&binary, dir.path(), None);
    let err = Bus::connect(BusConfig::new(server.url(), fresh_prefix()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), patchline_bus::BusErrorKind::Config, "{err}");
    assert!(err.to_string().contains("without JetStream"), "{err}");
    assert!(!err.to_string().contains("app-pass"), "{err}");
}
