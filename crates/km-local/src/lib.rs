//! km's local platform: sandboxes as supervised processes on this machine, each with a real
//! OpenSSH `sshd`, a SQLite store of records, and the agent channel that carries commands and
//! ssh streams. It is km's embedded default and what the end-to-end tests run against.

pub mod agent;
pub mod client;
pub mod isolation;
pub mod layout;
pub mod platform;
pub mod process_tree;
pub mod protocol;
pub mod runtime;
pub mod sshd;
pub mod store;
pub mod tcp_peer;
