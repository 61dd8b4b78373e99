//! Live notices for server-sent event streams: one broadcast channel per
//! tenant with at least one open stream, carrying rendered notices. A
//! stream that falls behind (the channel is bounded) catches up from the
//! database, so nothing is lost, only re-read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use patchline_core::TenantIdx;
use tokio::sync::broadcast;

/// Notices buffered per tenant channel before a slow stream must re-read.
pub const CHANNEL_CAPACITY: usize = 64;

/// One live notice: its id and its JSON as the tenant sees it.
#[derive(Debug, Clone)]
pub struct LiveNotice {
    pub id: i64,
    pub json: Arc<str>,
}

/// The per-tenant channels.
#[derive(Debug, Default)]
pub struct Hub {
    channels: Mutex<HashMap<TenantIdx, broadcast::Sender<LiveNotice>>>,
}

impl Hub {
    pub fn subscribe(&self, t: TenantIdx) -> broadcast::Receiver<LiveNotice> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(t)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Tenants with at least one open stream.
    pub fn listening(&self, t: TenantIdx) -> bool {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        match channels.get(&t) {
            Some(tx) if tx.receiver_count() > 0 => true,
            Some(_) => {
                // The last stream closed: drop the channel.
                channels.remove(&t);
                false
            }
            None => false,
        }
    }

    pub fn publish(&self, t: TenantIdx, notice: LiveNotice) {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(&t) {
            // No receiver left is fine: streams re-read from the database.
            let _ = tx.send(notice);
        }
    }
}
