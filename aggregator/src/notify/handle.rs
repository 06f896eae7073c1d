//! The handle queries and the gRPC silence API hold: silences (stored durably first), each
//! receiver's delivery status and the notification history.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

use super::mute::Silence;
use super::store::history::{HistoryFilter, Notification};
use super::store::{self, Store};
use crate::ha::HaView;

/// What a receiver has done, for status queries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverStatus {
    pub name: String,
    pub sent: u64,
    pub failed_attempts: u64,
    pub dropped: u64,
    pub queued: u64,
    pub last_error: String,
    pub last_errcode: i64,
    /// Group flushes that had nothing new to say (deduplicated, silenced or inhibited).
    pub suppressed: u64,
    /// DingTalk errcodes seen, with counts.
    pub errcodes: BTreeMap<i64, u64>,
}

/// State shared with the query service: silences and receiver status.
#[derive(Debug, Default)]
pub struct Shared {
    pub silences: Vec<Silence>,
    pub receivers: Vec<ReceiverStatus>,
}

/// Cheap handle to the shared notification state.
#[derive(Clone, Default)]
pub struct NotifyHandle {
    shared: Arc<Mutex<Shared>>,
    store: Option<Store>,
    /// This replica's role, from the lease keeper (`None`: a single aggregator).
    ha: Option<watch::Receiver<HaView>>,
    /// Deliveries the shared log does not have yet (the database was away), for the lease
    /// keeper to report.
    unrecorded: Arc<AtomicUsize>,
}

impl NotifyHandle {
    pub fn new(store: Option<Store>) -> Self {
        let silences = store
            .as_ref()
            .and_then(|s| s.silences().ok())
            .unwrap_or_default();
        Self {
            shared: Arc::new(Mutex::new(Shared {
                silences,
                receivers: Vec::new(),
            })),
            store,
            ha: None,
            unrecorded: Arc::default(),
        }
    }

    /// The count of deliveries not yet recorded in the shared log (see the field).
    pub fn unrecorded(&self) -> Arc<AtomicUsize> {
        self.unrecorded.clone()
    }

    /// A replica: its role comes from the lease keeper's view.
    pub fn with_ha(mut self, view: watch::Receiver<HaView>) -> Self {
        self.ha = Some(view);
        self
    }

    /// This replica's role and peers now.
    pub fn ha_view(&self) -> HaView {
        self.ha
            .as_ref()
            .map_or_else(HaView::single, |view| view.borrow().clone())
    }

    /// The lease keeper's view, to wait on (a replica only).
    pub(super) fn ha_changes(&self) -> Option<watch::Receiver<HaView>> {
        self.ha.clone()
    }

    /// Tells the other replicas of a retirement made here (nothing to do for one aggregator).
    pub fn share_retirement(
        &self,
        host: &str,
        agent: Option<&str>,
    ) -> Result<(), store::StoreError> {
        let (Some(pg), Some(view)) = (self.store.as_ref().and_then(Store::postgres), &self.ha)
        else {
            return Ok(());
        };
        let replica = view.borrow().replica.clone();
        pg.share_retirement(host, agent, &replica)
    }

    /// Replaces the silences with the shared store's (a replica's peer may have changed them).
    pub(super) fn refresh_silences(&self) -> Result<(), store::StoreError> {
        if let Some(store) = &self.store {
            let silences = store.silences()?;
            self.lock().silences = silences;
        }
        Ok(())
    }

    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a silence (durably first).
    pub fn add_silence(&self, silence: Silence) -> Result<(), store::StoreError> {
        if let Some(store) = &self.store {
            store.save_silence(&silence)?;
        }
        let mut shared = self.lock();
        shared.silences.retain(|s| s.id != silence.id);
        shared.silences.push(silence);
        Ok(())
    }

    /// The history's messages matching `filter`, oldest first (none without a state database).
    /// Blocks on SQLite: call it off the async workers.
    pub fn notifications(
        &self,
        filter: &HistoryFilter,
    ) -> Result<Vec<Notification>, store::StoreError> {
        match &self.store {
            Some(store) => store.notifications(filter),
            None => Ok(Vec::new()),
        }
    }

    /// Ends a silence now; false when there is no such silence.
    pub fn expire_silence(&self, id: &str, now: SystemTime) -> Result<bool, store::StoreError> {
        let silence = {
            let mut shared = self.lock();
            let Some(silence) = shared.silences.iter_mut().find(|s| s.id == id) else {
                return Ok(false);
            };
            if silence.ends_at > now {
                silence.ends_at = now;
            }
            silence.clone()
        };
        if let Some(store) = &self.store {
            store.save_silence(&silence)?;
        }
        Ok(true)
    }
}
