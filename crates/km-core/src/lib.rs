//! km's domain: identifiers, profiles, keys, records, the ssh-config block editor and userdata.
//!
//! Everything here is either pure (`text → text`, `value → value`) or touches the file system only
//! at paths it is handed. Nothing here prints, talks to a network or knows about a platform.

pub mod atomic_file;
pub mod authorized_keys;
pub mod id;
pub mod keys;
pub mod known_hosts;
pub mod paths;
pub mod platform;
pub mod profile;
pub mod record;
pub mod remote_script;
pub mod ssh_config;
pub mod userdata;
pub mod vscode_server;
