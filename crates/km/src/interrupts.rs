//! Ctrl-C, SIGTERM and SIGHUP held back through steps that must not stop half-way.
//!
//! While an [`Interrupts`] guard lives, those signals only set a flag: the command checks it at
//! safe points (create rolls back, rekey finishes its commit first) instead of dying between
//! two files. `kill -9` cannot be held back; the on-disk state is recoverable for that case.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals an operator or a service manager uses to stop km.
const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Records stop signals instead of dying of them, until dropped.
pub(crate) struct Interrupts {
    received: Arc<AtomicBool>,
    handlers: Vec<SigId>,
}

impl Interrupts {
    /// Starts holding stop signals back.
    pub(crate) fn hold() -> std::io::Result<Self> {
        let received = Arc::new(AtomicBool::new(false));
        let mut handlers = Vec::new();
        for signal in STOP_SIGNALS {
            handlers.push(signal_hook::flag::register(signal, Arc::clone(&received))?);
        }
        Ok(Self { received, handlers })
    }

    /// Whether a stop signal arrived since [`Interrupts::hold`].
    pub(crate) fn received(&self) -> bool {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for handler in self.handlers.drain(..) {
            signal_hook::low_level::unregister(handler);
        }
    }
}

/// The exit code of a command stopped by Ctrl-C, as shells report it.
pub(crate) const INTERRUPTED_EXIT: u8 = 130;
