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
    /// About the reading tenant's own artifact (not a watched one): only
    /// those become `notified` when streamed.
    pub own: bool,
    /// Not rendered here (a patch notice): streams read it from the store.
    pub from_store: bool,
}

/// The per-tenant channels, and the streams open per tenant.
#[derive(Debug, Default)]
pub struct Hub {
    channels: Mutex<HashMap<TenantIdx, broadcast::Sender<LiveNotice>>>,
    open: Mutex<StreamCounts>,
}

#[derive(Debug, Default)]
struct StreamCounts {
    total: usize,
    per_tenant: HashMap<TenantIdx, usize>,
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefused {
    /// The server holds `streams_max` streams.
    Full,
    /// The tenant holds its `streams_per_tenant_max`.
    TenantFull,
}

impl Hub {
    /// Counts a new stream of `t`, or refuses it at the caps. The count
    /// lasts as long as the connection: [`Hub::close_stream`] is called
    /// when the stream's body is dropped (the client went away).
    pub fn open_stream(
        &self,
        t: TenantIdx,
        total_max: usize,
        per_tenant_max: usize,
    ) -> Result<(), StreamRefused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= total_max {
            return Err(StreamRefused::Full);
        }
        let mine = open.per_tenant.entry(t).or_default();
        if *mine >= per_tenant_max {
            return Err(StreamRefused::TenantFull);
        }
        *mine += 1;
        open.total += 1;
        Ok(())
    }

    pub fn close_stream(&self, t: TenantIdx) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_tenant.get_mut(&t) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_tenant.remove(&t);
            }
        }
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

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
