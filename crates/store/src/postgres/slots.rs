//! Caps that hold for a whole deployment, not per node: a tenant's open
//! event streams. Each stream holds one of the tenant's slots, a session
//! advisory lock in PostgreSQL's two-number key space (`tenant`, `slot`)
//! taken on the node's slot connection; a node that dies releases its
//! slots with its session. Only patchline uses the two-number key space
//! of its database (the other locks are single-number keys).

use std::sync::Mutex;

use super::{Conn, db_err};
use crate::StoreError;

/// A node's connection holding the slots of its open streams.
pub struct StreamSlots {
    conn: Mutex<Held>,
}

/// The connection, the slots this node holds on it (advisory locks are
/// re-entrant within a session: a held slot must not be taken again by
/// this node) and the session they are held on.
struct Held(Conn, std::collections::HashSet<(u32, i32)>, u64);

impl std::fmt::Debug for StreamSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSlots").finish_non_exhaustive()
    }
}

impl StreamSlots {
    pub fn open(url: &str) -> Result<StreamSlots, StoreError> {
        Ok(StreamSlots {
            conn: Mutex::new(Held(Conn::open(url)?, Default::default(), 1)),
        })
    }

    /// Takes a free slot of `tenant` among `max`, or `None` when every
    /// one is held (by any node of the deployment).
    pub fn acquire(&self, tenant: u32, max: usize) -> Result<Option<i32>, StoreError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Database("slot connection poisoned".into()))?;
        let Held(conn, held, held_on) = &mut *guard;
        conn.client()?;
        if conn.session() != *held_on {
            // A new connection: the old session's locks are gone.
            held.clear();
            *held_on = conn.session();
        }
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        let mine: Vec<i32> = held
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, s)| *s)
            .collect();
        // Rows are tried in order and the scan stops at the first slot
        // taken: no other slot stays locked.
        let row = conn
            .client()?
            .query_opt(
                "SELECT s FROM generate_series(0, $2 - 1) AS s
                 WHERE s <> ALL($3) AND pg_try_advisory_lock($1, s) LIMIT 1",
                &[&(tenant as i32), &max, &mine],
            )
            .map_err(db_err)?;
        let slot = row.map(|r| r.get::<_, i32>(0));
        if let Some(slot) = slot {
            held.insert((tenant, slot));
        }
        Ok(slot)
    }

    /// Gives a slot back (a failure leaves it to the session's end).
    pub fn release(&self, tenant: u32, slot: i32) {
        if let Ok(mut guard) = self.conn.lock() {
            let Held(conn, held, _) = &mut *guard;
            if held.remove(&(tenant, slot))
                && let Ok(client) = conn.client()
            {
                let _ = client.execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&(tenant as i32), &slot],
                );
            }
        }
    }
}
