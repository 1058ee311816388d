//! Operations that commands and the management component share: making a sandbox and rolling
//! it back (`provision`), destroying one (`destroy`), what this machine keeps for each sandbox (`operator_state`), and the
//! pre-flight probe with the host-key pin it reads (`probe`), one named sandbox with its store,
//! platform and shared gates (`sandbox_handle`), and a profile checked by its provider
//! (`profile`).
//! Commands parse and render; these do the work and return what happened.

pub(crate) mod destroy;
pub(crate) mod operator_state;
pub(crate) mod probe;
pub(crate) mod profile;
pub(crate) mod provision;
pub(crate) mod sandbox_handle;
