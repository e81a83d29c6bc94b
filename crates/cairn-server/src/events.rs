//! Ref change events for `/v1/watch`, with ids a client can resume from.
//!
//! Every change gets the next id of one server-wide counter and goes into a
//! bounded ring of recent events and onto a broadcast channel. A watcher
//! that reconnects with `Last-Event-ID` gets the ring's events after that
//! id; if that id already fell out of the ring (or is from before a
//! restart: ids start at the server's start time in microseconds, so they
//! keep growing across restarts), it gets a `reset` and must re-list.
//!
//! Events come from two sources: the server's own ref writes, published as
//! they succeed, and the backend's own watch (when it has one) for writes
//! by other processes on the same store. A change may thus be reported
//! twice; watchers re-read refs, so a duplicate costs one read.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_store::RefName;
use futures::StreamExt;
use tokio::sync::broadcast;

/// One change.
#[derive(Clone, Debug)]
pub struct Event {
    /// Its id (increasing).
    pub id: u64,
    /// The ref that changed.
    pub name: RefName,
}

/// Where a new watcher starts.
#[derive(Debug)]
pub enum Start {
    /// A fresh watch: nothing to replay.
    Fresh,
    /// Replay these (already past the client's `Last-Event-ID`).
    Replay(Vec<Event>),
    /// The client's id is not in the ring: it must re-list.
    Reset,
}

/// A watcher's starting point, its live feed, and the newest id at the
/// moment it subscribed.
pub struct Subscription {
    /// What to send first.
    pub start: Start,
    /// Events after `latest`.
    pub live: broadcast::Receiver<Event>,
    /// The newest id when subscribing (0 if none yet).
    pub latest: u64,
}

/// The ring and the broadcast channel.
#[derive(Debug)]
pub struct EventHub {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Event>,
    capacity: usize,
}

#[derive(Debug)]
struct Ring {
    next_id: u64,
    events: VecDeque<Event>,
}

impl EventHub {
    /// A hub keeping the `capacity` most recent events.
    pub fn new(capacity: usize) -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Self {
            ring: Mutex::new(Ring {
                next_id: start,
                events: VecDeque::with_capacity(capacity),
            }),
            tx: broadcast::channel(capacity.max(16)).0,
            capacity,
        }
    }

    /// Records a change and tells live watchers.
    pub fn publish(&self, name: RefName) {
        let mut ring = self.ring.lock().unwrap();
        let event = Event {
            id: ring.next_id,
            name,
        };
        ring.next_id += 1;
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock so the ring and the channel agree on order.
        let _ = self.tx.send(event);
    }

    /// The id the next change will get: it moves whenever a ref changes.
    pub fn latest(&self) -> u64 {
        self.ring.lock().unwrap().next_id
    }

    /// Subscribes a watcher that last saw `after` (its `Last-Event-ID`).
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let ring = self.ring.lock().unwrap();
        let live = self.tx.subscribe();
        let latest = ring.next_id - 1;
        let oldest = ring.next_id - ring.events.len() as u64;
        let start = match after {
            None => Start::Fresh,
            Some(a) if a > latest || a + 1 < oldest => Start::Reset,
            Some(a) => Start::Replay(ring.events.iter().filter(|e| e.id > a).cloned().collect()),
        };
        Subscription {
            start,
            live,
            latest,
        }
    }
}

/// Feeds the backend's own change stream (if it can push) into the hub, so
/// writes by other processes on the same store reach watchers too.
pub async fn spawn_backend_feed(state: crate::State) {
    let events = match state.store.refs.watch("").await {
        Ok(Some(events)) => events,
        Ok(None) => {
            tracing::info!("store cannot push ref changes; watchers see this server's writes only");
            return;
        }
        Err(e) => {
            tracing::warn!(
                "watching the store's refs: {e}; watchers see this server's writes only"
            );
            return;
        }
    };
    let mut stopping = state.stopping.clone();
    tokio::spawn(async move {
        let mut events = events.take_until(Box::pin(async move {
            let _ = stopping.wait_for(|s| *s).await;
        }));
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => state.hub.publish(e.name),
                Err(e) => tracing::warn!("store watch: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> RefName {
        RefName::new(n).unwrap()
    }

    #[test]
    fn replays_after_the_last_seen_id_and_resets_when_it_fell_out() {
        let hub = EventHub::new(3);
        let first = hub.subscribe(None).latest;
        for n in ["a", "b", "c", "d"] {
            hub.publish(name(n));
        }
        // Ring holds b, c, d (ids first+2 ..= first+4).
        let Start::Replay(events) = hub.subscribe(Some(first + 2)).start else {
            panic!("expected a replay");
        };
        let names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "d"]);
        assert!(matches!(hub.subscribe(Some(first)).start, Start::Reset));
        assert!(matches!(
            hub.subscribe(Some(first + 99)).start,
            Start::Reset
        ));
        assert!(matches!(
            hub.subscribe(Some(first + 1)).start,
            Start::Replay(_)
        ));
    }
}
