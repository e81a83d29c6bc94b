//! The driver against an in-memory store that counts requests: a member
//! with nothing to do heartbeats on the rollout record it already read
//! until the wait's `refresh`, and a new statement still makes it read
//! the record and write a new rollout at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cairn_digest::Digest;
use cairn_rollout::{
    Accepted, Health, MemberRecord, MemberState, Phase, Plan, RolloutRecord, Time,
};
use cairn_store::{MemoryStore, RefName, RefStore, Result, Store, Version, Versioned};
use tokio::sync::{watch, Notify};

use super::driver::Driver;
use super::{lock, Shared};
use crate::config::FleetTiming;
use crate::gate::GateContext;
use crate::status::{now_ms, Counters, Status};

/// A memory ref store counting reads and writes per ref.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryStore,
    gets: Mutex<BTreeMap<String, u32>>,
    writes: Mutex<BTreeMap<String, u32>>,
}

impl Counting {
    fn gets(&self, name: &str) -> u32 {
        self.gets.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn writes(&self, name: &str) -> u32 {
        self.writes.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn reset(&self) {
        self.gets.lock().unwrap().clear();
        self.writes.lock().unwrap().clear();
    }
}

fn bump(map: &Mutex<BTreeMap<String, u32>>, name: &RefName) {
    *map.lock().unwrap().entry(name.as_str().into()).or_default() += 1;
}

#[async_trait]
impl RefStore for Counting {
    async fn get(&self, name: &RefName) -> Result<Option<Versioned>> {
        bump(&self.gets, name);
        self.inner.get(name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<RefName>> {
        self.inner.list(prefix).await
    }

    async fn compare_and_swap(
        &self,
        name: &RefName,
        expected: Option<&Version>,
        value: Vec<u8>,
    ) -> Result<Version> {
        bump(&self.writes, name);
        self.inner.compare_and_swap(name, expected, value).await
    }

    async fn delete(&self, name: &RefName, expected: &Version) -> Result<()> {
        self.inner.delete(name, expected).await
    }
}

const ROLLOUT: &str = "fleet/svc/eu/rollout";
const OWN: &str = "fleet/svc/eu/members/a1";

fn status(release: Digest) -> Status {
    Status {
        member: MemberRecord {
            agent: "a1".into(),
            release: Some(release),
            version: Some("1".into()),
            sequence: Some(1),
            generation: Some(1),
            target: None,
            state: MemberState::Running,
            health: Health::Healthy,
            heartbeat: 0,
            last_error: None,
            previous: None,
            failed: None,
        },
        service: "svc".into(),
        channel: "eu".into(),
        set: "eu".into(),
        current: None,
        processes: Vec::new(),
        last_update: None,
        failed: Vec::new(),
        refused: None,
        counters: Counters::default(),
    }
}

fn accepted(release: Digest, sequence: u64) -> Accepted {
    Accepted {
        release,
        sequence,
        version: Some(sequence.to_string()),
        plan: Plan::default(),
        at: Time(now_ms()),
        statement: None,
    }
}

async fn rollout(refs: &Counting) -> Option<RolloutRecord> {
    let v = refs
        .inner
        .get(&RefName::new(ROLLOUT).unwrap())
        .await
        .unwrap()?;
    Some(RolloutRecord::parse(ROLLOUT, &v.value).unwrap())
}

/// Waits up to `limit` for the rollout record to satisfy `cond`.
async fn until_rollout(refs: &Counting, limit: Duration, cond: impl Fn(&RolloutRecord) -> bool) {
    let end = tokio::time::Instant::now() + limit;
    loop {
        if rollout(refs).await.is_some_and(|r| cond(&r)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "rollout record: {:?}",
            rollout(refs).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn heartbeats_use_the_record_read_until_refresh_and_a_new_statement_reads_it() {
    let (r1, r2) = (Digest::of(b"release 1"), Digest::of(b"release 2"));
    let refs = Arc::new(Counting::default());
    let store = Store {
        blobs: Arc::new(MemoryStore::new()),
        refs: refs.clone(),
        local: None,
    };
    let (_status_tx, status_rx) = watch::channel(status(r1));
    let timing = FleetTiming {
        poll: Duration::from_millis(50),
        idle_poll: Duration::from_secs(20),
        heartbeat: Duration::from_millis(250),
        member_timeout: Duration::from_secs(2),
        steward_lease: Duration::from_secs(1),
        max_skew: Duration::from_millis(100),
        check_retry: Duration::from_secs(1),
    };
    let shared = Arc::new(Mutex::new(Shared {
        accepted: Some(accepted(r1, 1)),
        budget: Duration::from_secs(1),
        fetched: vec![r1],
        ..Shared::default()
    }));
    let to_driver = Arc::new(Notify::new());
    let cx = GateContext {
        store,
        service: "svc".into(),
        set: "eu".into(),
        agent: "a1".into(),
        status: status_rx,
        trust: super::Trust {
            policy: cairn_trust::ChannelPolicy {
                service: "svc".into(),
                channel: "eu".into(),
                keys: Vec::new(),
                threshold: 1,
            },
            keys: cairn_trust::KeySet::new(),
        },
    };
    let driver = Driver::new(
        cx,
        &timing,
        shared.clone(),
        to_driver.clone(),
        Arc::default(),
    );
    let task = tokio::spawn(driver.run());

    // Alone in the set and on the target: the rollout is done at once.
    until_rollout(&refs, Duration::from_secs(5), |r| r.phase == Phase::Done).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    refs.reset();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (beats, reads) = (refs.writes(OWN), refs.gets(ROLLOUT));
    assert!(beats >= 4, "a heartbeat every 250 ms: {beats} in 1.6 s");
    assert_eq!(
        reads, 0,
        "waiting until the idle poll (20 s), no heartbeat reads the rollout record"
    );
    assert_eq!(refs.writes(ROLLOUT), 0);

    // A new statement: the decision wants a new rollout, so the record is
    // read again and the rollout written, without waiting for `refresh`.
    lock(&shared).accepted = Some(accepted(r2, 2));
    to_driver.notify_one();
    until_rollout(&refs, Duration::from_secs(2), |r| {
        r.target == r2 && r.sequence == 2
    })
    .await;
    assert!(
        refs.gets(ROLLOUT) >= 1,
        "the record was read before the write"
    );
    task.abort();
}
