//! Whether the listener takes new connections, for `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Whether the listener takes new connections: its accept loop runs and it holds fewer than its
/// cap (above it, clients are turned away with `503`).
#[derive(Clone)]
pub struct ListenerHealth {
    pub(super) accepting: Arc<AtomicBool>,
    pub(super) open: Arc<AtomicUsize>,
    pub(super) cap: usize,
}

impl ListenerHealth {
    pub fn accepting(&self) -> Result<(), String> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err("not accepting connections (starting or shutting down)".into());
        }
        let open = self.open.load(Ordering::Relaxed);
        if open >= self.cap {
            return Err(format!(
                "holds {open} connections, its cap: new clients are turned away"
            ));
        }
        Ok(())
    }
}

/// Marks the accept loop as running until dropped.
pub(super) struct Accepting(Arc<AtomicBool>);

impl Accepting {
    pub(super) fn start(flag: &Arc<AtomicBool>) -> Self {
        flag.store(true, Ordering::Relaxed);
        Self(Arc::clone(flag))
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_accepting_and_below_the_cap() {
        let flag = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let health = ListenerHealth {
            accepting: Arc::clone(&flag),
            open: Arc::clone(&open),
            cap: 2,
        };
        assert!(health.accepting().is_err(), "not started");
        let running = Accepting::start(&flag);
        assert!(health.accepting().is_ok());
        open.store(2, Ordering::Relaxed);
        assert!(health.accepting().is_err(), "at the cap");
        open.store(1, Ordering::Relaxed);
        drop(running);
        assert!(health.accepting().is_err(), "stopped");
    }
}
