//! The bus against the NATS server of `PATCHLINE_TEST_NATS_URL`: change log,
//! work queue, live notices, bounds, start-up and failures. Every test uses
//! its own prefix and deletes its streams.

mod common;

use common::{Cleanup, PROMPT, config, connect, fresh_prefix, nats_url, within};
use patchline_bus::{Bus, BusError, BusErrorKind, LiveNotice, SyncSetting};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn cleanup(url: &str, prefix: &patchline_bus::BusPrefix) -> Cleanup {
    Cleanup {
        url: url.to_string(),
        prefix: prefix.clone(),
    }
}

fn notice(id: i64, tenant: &str, payload: &str) -> LiveNotice {
    LiveNotice {
        id,
        tenant: tenant.into(),
        payload: payload.as_bytes().to_vec().into(),
    }
}

#[tokio::test]
async fn prefixes_keep_deployments_apart() {
    let Some(url) = nats_url("prefixes_keep_deployments_apart") else {
        return;
    };
    let (pa, pb) = (fresh_prefix(), fresh_prefix());
    let _cleanup = (cleanup(&url, &pa), cleanup(&url, &pb));
    let a = connect(&url, &pa).await;
    let b = connect(&url, &pb).await;

    // Changes: B's log holds only B's.
    a.publish_change(1, b"from a").await.unwrap();
    b.publish_change(1, b"from b").await.unwrap();
    let first_b = within(PROMPT, "B's first change", b.follow_changes(1).next())
        .await
        .unwrap();
    assert_eq!(&first_b.payload[..], b"from b");
    let first_a = within(PROMPT, "A's first change", a.follow_changes(1).next())
        .await
        .unwrap();
    assert_eq!(&first_a.payload[..], b"from a");

    // Jobs: A's job is in A's queue only.
    a.publish_job("job-a", b"").await.unwrap();
    assert_eq!(b.queued_jobs().await.unwrap(), 0);
    assert!(
        b.claim_jobs(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    let got = a.claim_jobs(10, PROMPT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id(), "job-a");

    // Live notices: A's notice reaches A's subscriber (so the server routed
    // it) before B publishes; B's subscriber hears B's first.
    let mut sub_a = a.subscribe_notices().await.unwrap();
    let mut sub_b = b.subscribe_notices().await.unwrap();
    a.publish_notice(&notice(1, "t", "a")).await.unwrap();
    let heard_a = within(PROMPT, "A's notice", sub_a.next()).await.unwrap();
    assert_eq!(&heard_a.payload[..], b"a");
    b.publish_notice(&notice(2, "t", "b")).await.unwrap();
    let heard_b = within(PROMPT, "B's notice", sub_b.next()).await.unwrap();
    assert_eq!((heard_b.id, &heard_b.payload[..]), (2, &b"b"[..]));

    for job in got {
        job.ack().await.unwrap();
    }
    a.delete_streams().await.unwrap();
    b.delete_streams().await.unwrap();
}

#[tokio::test]
async fn change_log_is_ordered_deduplicated_and_shows_gaps() {
    let Some(url) = nats_url("change_log_is_ordered_deduplicated_and_shows_gaps") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let bus = connect(&url, &p).await;

    let mut positions = Vec::new();
    for seq in 1..=5u64 {
        let published = bus
            .publish_change(seq, format!("change {seq}").as_bytes())
            .await
            .unwrap();
        assert!(!published.duplicate);
        positions.push(published.stream_seq);
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    // A re-publish after a crash stores nothing new.
    let again = bus.publish_change(3, b"change 3").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.stream_seq, positions[2]);

    // Catch-up from the start: every change once, in order, nothing missed.
    let mut follower = bus.follow_changes(1);
    for seq in 1..=5u64 {
        let change = within(PROMPT, "catch-up", follower.next()).await.unwrap();
        assert_eq!(change.seq, seq);
        assert_eq!(change.payload, format!("change {seq}").as_bytes());
        assert!(change.missed.is_empty(), "{change:?}");
    }

    // From a sequence in the middle.
    let mut middle = bus.follow_changes(3);
    let seqs: Vec<u64> = [
        within(PROMPT, "from 3", middle.next()).await.unwrap(),
        within(PROMPT, "from 3", middle.next()).await.unwrap(),
        within(PROMPT, "from 3", middle.next()).await.unwrap(),
    ]
    .iter()
    .map(|c| c.seq)
    .collect();
    assert_eq!(seqs, [3, 4, 5]);

    // Live tail, with a gap: 6 never reaches the bus, 7 does; the
    // follower says 6 is missing (to be read from PostgreSQL).
    let waiting = tokio::spawn(async move {
        let change = follower.next().await;
        (change, follower)
    });
    bus.publish_change(7, b"change 7").await.unwrap();
    let (change, mut follower) = within(PROMPT, "live tail", waiting).await.unwrap();
    let change = change.unwrap();
    assert_eq!((change.seq, change.missed.clone()), (7, 6..7));
    assert_eq!(follower.next_expected(), 8);

    // A follower starting past a gap says so at once.
    let mut late = bus.follow_changes(6);
    let change = within(PROMPT, "from 6", late.next()).await.unwrap();
    assert_eq!((change.seq, change.missed), (7, 6..7));

    // A copy of an older change stored later (published again beyond the
    // dedup window, or by a node that lagged) is skipped by the follower.
    let raw = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(patchline_bus::HEADER_CHANGE_SEQ, "5");
    raw.publish_with_headers(p.changes_subject(), headers, "stale 5".into())
        .await
        .unwrap()
        .await
        .unwrap();
    bus.publish_change(8, b"change 8").await.unwrap();
    let change = within(PROMPT, "after 7", follower.next()).await.unwrap();
    assert_eq!((change.seq, change.missed.is_empty()), (8, true));
    // Out of order in the stream, the copy may hide 7 from a new follower's
    // search for its start, but then 7 is reported missing: nothing is
    // skipped silently.
    let mut late = bus.follow_changes(6);
    let change = within(PROMPT, "from 6 again", late.next()).await.unwrap();
    assert!(
        change.seq >= 7 && change.missed == (6..change.seq),
        "{change:?}"
    );

    // A follower from beyond the end waits for new changes.
    let mut ahead = bus.follow_changes(100);
    let waiting = tokio::spawn(async move { ahead.next().await });
    bus.publish_change(9, b"change 9").await.unwrap();
    bus.publish_change(100, b"change 100").await.unwrap();
    let change = within(PROMPT, "from 100", waiting).await.unwrap().unwrap();
    assert_eq!((change.seq, change.missed.is_empty()), (100, true));

    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn acked_jobs_leave_and_ids_are_deduplicated() {
    let Some(url) = nats_url("acked_jobs_leave_and_ids_are_deduplicated") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let bus = connect(&url, &p).await;

    let first = bus.publish_job("delivery-1", b"payload").await.unwrap();
    assert!(!first.duplicate);
    let again = bus.publish_job("delivery-1", b"payload").await.unwrap();
    assert!(again.duplicate, "the same job id is queued once");
    assert_eq!(bus.queued_jobs().await.unwrap(), 1);

    let jobs = bus.claim_jobs(10, PROMPT).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = jobs.into_iter().next().unwrap();
    assert_eq!(
        (job.id(), &job.payload()[..], job.delivered()),
        ("delivery-1", &b"payload"[..], 1)
    );
    job.ack().await.unwrap();
    assert_eq!(bus.queued_jobs().await.unwrap(), 0, "an acked job leaves");
    // Not back after a lease either.
    let later = bus.claim_jobs(10, bus.lease() * 2).await.unwrap();
    assert!(later.is_empty(), "{later:?}");

    // Bad ids are refused before anything is sent.
    for bad in ["", "two words", "line\nbreak"] {
        let err = bus.publish_job(bad, b"").await.unwrap_err();
        assert_eq!(err.kind(), BusErrorKind::Invalid, "{bad:?}: {err}");
    }
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn a_nak_brings_the_job_back_after_its_delay_not_before() {
    let Some(url) = nats_url("a_nak_brings_the_job_back_after_its_delay_not_before") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let bus = connect(&url, &p).await;
    bus.publish_job("retry-me", b"").await.unwrap();

    let job = bus.claim_jobs(1, PROMPT).await.unwrap().pop().unwrap();
    let delay = Duration::from_millis(1500);
    let naked = Instant::now();
    job.nak(delay).await.unwrap();
    assert!(
        bus.claim_jobs(1, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty(),
        "not ready right after the nak"
    );
    let back = bus.claim_jobs(1, PROMPT).await.unwrap().pop().unwrap();
    let after = naked.elapsed();
    assert!(
        after >= delay,
        "back after {after:?}, before the {delay:?} delay"
    );
    assert_eq!((back.id(), back.delivered()), ("retry-me", 2));
    back.ack().await.unwrap();
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn a_termed_job_is_never_handed_out_again() {
    let Some(url) = nats_url("a_termed_job_is_never_handed_out_again") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let bus = connect(&url, &p).await;
    bus.publish_job("hopeless", b"").await.unwrap();
    let job = bus.claim_jobs(1, PROMPT).await.unwrap().pop().unwrap();
    job.term().await.unwrap();
    // Past two leases, nothing comes back.
    let later = bus
        .claim_jobs(1, bus.lease() * 2 + Duration::from_millis(500))
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:?}");
    assert_eq!(bus.queued_jobs().await.unwrap(), 0);
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_hands_the_job_out_again() {
    let Some(url) = nats_url("an_expired_lease_hands_the_job_out_again") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let node1 = connect(&url, &p).await;
    let node2 = connect(&url, &p).await;
    node1.publish_job("crashy", b"x").await.unwrap();

    // Node 1 takes it and dies (neither ack nor nak).
    let job = node1.claim_jobs(1, PROMPT).await.unwrap().pop().unwrap();
    let taken = Instant::now();
    assert_eq!(job.delivered(), 1);
    drop(job);

    // Node 2 gets it once the lease has run out.
    let back = node2.claim_jobs(1, PROMPT).await.unwrap().pop().unwrap();
    let after = taken.elapsed();
    assert_eq!((back.id(), back.delivered()), ("crashy", 2));
    assert!(
        after >= node1.lease() - Duration::from_millis(100),
        "back after {after:?}, within the lease"
    );
    back.ack().await.unwrap();
    node1.delete_streams().await.unwrap();
}

#[tokio::test]
async fn in_progress_keeps_the_lease() {
    let Some(url) = nats_url("in_progress_keeps_the_lease") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let node1 = connect(&url, &p).await;
    let node2 = connect(&url, &p).await;
    node1.publish_job("long", b"").await.unwrap();
    let job = node1.claim_jobs(1, PROMPT).await.unwrap().pop().unwrap();
    let lease = node1.lease();

    // Node 1 works for twice the lease, saying so every 2/5 of it; node 2
    // waits all that time and gets nothing.
    let worker = async {
        for _ in 0..5 {
            tokio::time::sleep(lease * 2 / 5).await;
            job.in_progress().await.unwrap();
        }
    };
    let (_, stolen) = tokio::join!(worker, node2.claim_jobs(1, lease * 2));
    assert!(stolen.unwrap().is_empty(), "the lease was kept");
    assert_eq!(job.delivered(), 1);
    job.ack().await.unwrap();
    node1.delete_streams().await.unwrap();
}

#[tokio::test]
async fn two_nodes_receive_disjoint_jobs() {
    let Some(url) = nats_url("two_nodes_receive_disjoint_jobs") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let node1 = connect(&url, &p).await;
    let node2 = connect(&url, &p).await;
    let total = 60;
    for i in 0..total {
        node1.publish_job(&format!("job-{i}"), b"").await.unwrap();
    }
    async fn drain(bus: &Bus, done: &std::sync::atomic::AtomicUsize, total: usize) -> Vec<String> {
        let mut mine = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.load(std::sync::atomic::Ordering::SeqCst) < total && Instant::now() < deadline {
            for job in bus.claim_jobs(3, Duration::from_millis(200)).await.unwrap() {
                mine.push(job.id().to_string());
                job.ack().await.unwrap();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            tokio::task::yield_now().await;
        }
        mine
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let (got1, got2) = tokio::join!(drain(&node1, &done, total), drain(&node2, &done, total));
    let set1: BTreeSet<_> = got1.iter().cloned().collect();
    let set2: BTreeSet<_> = got2.iter().cloned().collect();
    assert_eq!(set1.len(), got1.len(), "node 1 got a job twice");
    assert_eq!(set2.len(), got2.len(), "node 2 got a job twice");
    assert!(set1.is_disjoint(&set2), "{:?}", set1.intersection(&set2));
    assert_eq!(set1.len() + set2.len(), total);
    assert!(
        !set1.is_empty() && !set2.is_empty(),
        "both nodes worked: {} and {}",
        set1.len(),
        set2.len()
    );
    node1.delete_streams().await.unwrap();
}

#[tokio::test]
async fn live_notices_reach_every_node() {
    let Some(url) = nats_url("live_notices_reach_every_node") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let node1 = connect(&url, &p).await;
    let node2 = connect(&url, &p).await;
    let mut sub1 = node1.subscribe_notices().await.unwrap();
    let mut sub2 = node2.subscribe_notices().await.unwrap();
    let sent = [notice(41, "acme", "{\"n\":41}"), notice(42, "globex", "")];
    for n in &sent {
        node1.publish_notice(n).await.unwrap();
    }
    for sub in [&mut sub1, &mut sub2] {
        for n in &sent {
            let heard = within(PROMPT, "live notice", sub.next()).await.unwrap();
            assert_eq!(&heard, n);
        }
    }
    let err = node1
        .publish_notice(&notice(1, "two words", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BusErrorKind::Invalid);
    node1.delete_streams().await.unwrap();

    // A node shutting down ends its subscriptions.
    node2.close().await.unwrap();
    assert_eq!(
        within(PROMPT, "end of subscription", sub2.next()).await,
        None
    );
}

#[tokio::test]
async fn oversize_payloads_are_refused() {
    let Some(url) = nats_url("oversize_payloads_are_refused") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let mut cfg = config(&url, &p);
    cfg.payload_max_bytes = 2048;
    let bus = Bus::connect(cfg).await.unwrap();
    assert_eq!(bus.payload_max_bytes(), 2048);
    let big = vec![b'x'; 2049];
    let fits = vec![b'x'; 2048];

    for err in [
        bus.publish_change(1, &big).await.unwrap_err(),
        bus.publish_job("big", &big).await.unwrap_err(),
        bus.publish_notice(&LiveNotice {
            id: 1,
            tenant: "t".into(),
            payload: big.clone().into(),
        })
        .await
        .unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                BusError::TooLarge {
                    size: 2049,
                    max: 2048,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("2049") && err.to_string().contains("2048"));
    }
    assert_eq!(bus.queued_jobs().await.unwrap(), 0, "nothing was queued");
    bus.publish_change(1, &fits).await.unwrap();
    bus.publish_job("fits", &fits).await.unwrap();
    let change = within(PROMPT, "the change that fits", bus.follow_changes(1).next())
        .await
        .unwrap();
    assert_eq!(change.payload.len(), 2048);

    // The configured cap is lowered to what the server accepts.
    let mut huge = config(&url, &p);
    huge.payload_max_bytes = usize::MAX / 2;
    let lowered = Bus::connect(huge).await.unwrap();
    assert!(lowered.payload_max_bytes() < lowered.server().max_payload);
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn many_nodes_starting_at_once_share_the_streams() {
    let Some(url) = nats_url("many_nodes_starting_at_once_share_the_streams") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let cfg = config(&url, &p);
            tokio::spawn(Bus::connect(cfg))
        })
        .collect();
    let mut nodes = Vec::new();
    for start in starts {
        nodes.push(start.await.unwrap().expect("every node starts"));
    }
    // They are one deployment.
    nodes[0].publish_job("shared", b"").await.unwrap();
    let job = nodes[7].claim_jobs(1, PROMPT).await.unwrap().pop().unwrap();
    assert_eq!(job.id(), "shared");
    job.ack().await.unwrap();

    // A restarted node with another lease and other limits updates the
    // consumer and the stream, no error.
    let mut changed = config(&url, &p);
    changed.lease = Duration::from_secs(2);
    changed.changes_max_age = Duration::from_secs(3600);
    let node = Bus::connect(changed).await.unwrap();
    assert_eq!(node.lease(), Duration::from_secs(2));
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let info = js
        .get_stream(p.changes_stream())
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(p.work_stream())
        .await
        .unwrap()
        .get_consumer(&p.work_consumer())
        .await
        .unwrap();
    assert_eq!(
        consumer.cached_info().config.ack_wait,
        Duration::from_secs(2)
    );
    nodes[0].delete_streams().await.unwrap();
}

#[tokio::test]
async fn an_incompatible_existing_stream_is_refused() {
    let Some(url) = nats_url("an_incompatible_existing_stream_is_refused") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    // Someone else made <prefix>_WORK with limits retention.
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: p.work_stream(),
        subjects: vec![p.work_subject()],
        ..Default::default()
    })
    .await
    .unwrap();
    let err = Bus::connect(config(&url, &p)).await.unwrap_err();
    assert_eq!(err.kind(), BusErrorKind::Incompatible, "{err}");
    assert!(err.to_string().contains("retention"), "{err}");
    js.delete_stream(p.work_stream()).await.unwrap();
    let _ = js.delete_stream(p.changes_stream()).await;
}

#[tokio::test]
async fn an_unreachable_bus_is_unavailable_within_the_timeout() {
    // A port with nothing behind it: refused at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = fresh_prefix();
    let mut cfg = config(&format!("nats://alice:hunter2@127.0.0.1:{closed}"), &p);
    cfg.connect_timeout = Duration::from_millis(800);
    let started = Instant::now();
    let err = Bus::connect(cfg.clone()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("hunter2") && !text.contains("alice"),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{closed}")), "{text}");

    // A server that accepts and never speaks: the connect timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
    cfg.url = format!("nats://alice:hunter2@127.0.0.1:{port}");
    let started = Instant::now();
    let err = Bus::connect(cfg).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    drop(held);
}

#[tokio::test]
async fn the_servers_durability_is_reported() {
    let Some(url) = nats_url("the_servers_durability_is_reported") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let bus = connect(&url, &p).await;
    let server = bus.server();
    let version = server.version.trim_start_matches('v').to_string();
    let mut parts = version.split('.').map(|s| s.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    if (major, minor) < (2, 10) {
        assert_eq!(server.sync, SyncSetting::TooOld, "{server:?}");
    } else {
        // An ordinary account cannot read the server's configuration.
        assert_ne!(server.sync, SyncSetting::TooOld, "{server:?}");
    }
    if server.sync != SyncSetting::Always {
        let warning = server.durability_warning().unwrap();
        assert!(warning.contains("sync_interval: always"), "{warning}");
    }
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn bad_prefixes_are_refused_clearly() {
    let err = "prod.eu".parse::<patchline_bus::BusPrefix>().unwrap_err();
    assert_eq!(err.kind(), BusErrorKind::Config);
    assert!(err.to_string().contains("'.'"), "{err}");
}

#[tokio::test]
async fn a_full_work_queue_refuses_new_jobs_and_keeps_the_old() {
    let Some(url) = nats_url("a_full_work_queue_refuses_new_jobs_and_keeps_the_old") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let mut cfg = config(&url, &p);
    cfg.work_max_jobs = 3;
    let bus = Bus::connect(cfg).await.unwrap();
    for i in 0..3 {
        bus.publish_job(&format!("j{i}"), b"").await.unwrap();
    }
    let err = bus.publish_job("j3", b"").await.unwrap_err();
    assert!(matches!(err, BusError::Full { .. }), "{err}");
    assert!(err.is_unavailable(), "a full queue is a 503: {err}");
    let jobs = bus.claim_jobs(10, PROMPT).await.unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id()).collect();
    assert_eq!(ids, ["j0", "j1", "j2"]);
    for job in jobs {
        job.ack().await.unwrap();
    }
    // Room again.
    bus.publish_job("j3", b"").await.unwrap();
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn at_the_lease_limit_a_claim_is_empty_not_an_error() {
    let Some(url) = nats_url("at_the_lease_limit_a_claim_is_empty_not_an_error") else {
        return;
    };
    let p = fresh_prefix();
    let _cleanup = cleanup(&url, &p);
    let mut cfg = config(&url, &p);
    cfg.max_ack_pending = 2;
    cfg.lease = Duration::from_secs(30);
    let bus = Bus::connect(cfg).await.unwrap();
    for i in 0..3 {
        bus.publish_job(&format!("j{i}"), b"").await.unwrap();
    }
    let leased = bus.claim_jobs(10, PROMPT).await.unwrap();
    assert_eq!(leased.len(), 2, "{leased:?}");
    let none = bus
        .claim_jobs(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let mut leased = leased.into_iter();
    leased.next().unwrap().ack().await.unwrap();
    let third = bus.claim_jobs(10, PROMPT).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].id(), "j2");
    third.into_iter().next().unwrap().ack().await.unwrap();
    leased.next().unwrap().ack().await.unwrap();
    bus.delete_streams().await.unwrap();
}
