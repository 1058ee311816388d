//! Loading a profile: km-core resolves its inheritance and shared fields, then the provider of
//! its substrate reads its own `spec.runtime` fields, so every command and the management
//! component see the same checked, defaulted profile.

use std::path::Path;

use km_core::profile::{Profile, ProfileError, SearchPath, load_profile};

use crate::platforms;

/// The profile at `path`, checked by km-core and its provider; every error found otherwise.
pub(crate) fn load(path: &Path, search: &SearchPath) -> Result<Profile, Vec<ProfileError>> {
    let mut profile = load_profile(path, search)?;
    platforms::read_runtime(&mut profile, path)?;
    Ok(profile)
}
