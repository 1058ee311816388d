//! Operations that commands and the management component share: making a sandbox and rolling
//! it back (`provision`), what this machine keeps for each sandbox (`operator_state`), and the
//! pre-flight probe with the host-key pin it reads (`probe`), one named sandbox with its store,
//! platform and shared gates (`sandbox_handle`).
//! Commands parse and render; these do the work and return what happened.

pub(crate) mod operator_state;
pub(crate) mod probe;
pub(crate) mod provision;
pub(crate) mod sandbox_handle;
