//! The cgroups a process keeps from one of its sandboxes to the next, when it runs them
//! one at a time (a helper of the runner's pool): see [`V1Slot`] for what is kept and why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::cgroup::{CgroupError, V1Slot};

/// Whether a [`CgroupSlot`] lives.
static KEEP: AtomicBool = AtomicBool::new(false);
/// The slot between two sandboxes.
static KEPT: Mutex<Option<V1Slot>> = Mutex::new(None);

/// While it lives, this process's sandboxes reuse one slot's cgroups instead of making
/// their own; when it goes, so do they. A runner killed before that leaves them to the
/// janitor, as it would a sandbox's own.
pub struct CgroupSlot(());

impl CgroupSlot {
    /// Call in a process that runs its sandboxes one after another; a second sandbox
    /// alive at once gets a slot of its own, removed when it ends.
    pub fn keep() -> CgroupSlot {
        KEEP.store(true, Ordering::SeqCst);
        CgroupSlot(())
    }
}

impl Drop for CgroupSlot {
    fn drop(&mut self) {
        KEEP.store(false, Ordering::SeqCst);
        // The last sandbox's pid 1 may still be exiting, with its cgroups or the slot.
        crate::sandbox::reap_exiting();
        if let Some(slot) = kept().take() {
            // Left to the janitor if it cannot go now.
            let _ = slot.remove();
        }
    }
}

fn kept() -> std::sync::MutexGuard<'static, Option<V1Slot>> {
    KEPT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The kept slot, for the next sandbox.
pub(super) fn take() -> Option<V1Slot> {
    kept().take()
}

/// The slot of a sandbox that ended, empty: kept for the next one, or removed.
pub(super) fn give_back(slot: V1Slot) -> Result<(), CgroupError> {
    let mut kept = kept();
    if KEEP.load(Ordering::SeqCst) && kept.is_none() {
        *kept = Some(slot);
        return Ok(());
    }
    drop(kept);
    slot.remove()
}
