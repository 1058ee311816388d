//! Reading profile files, resolving `extends`, and reporting every error with its place.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{API_VERSION, KIND, Merge, Profile, ProfileDoc, Substrate};
use crate::id::{DEFAULT_PREFIX, validate_prefix};

/// The deepest `extends` chain km follows.
pub(super) const MAX_DEPTH: usize = 10;
/// The largest profile file km reads; real profiles are a few kilobytes.
pub(super) const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

/// Each parent file resolved so far, by canonical path: a parent named by many children is
/// read and resolved once, so a diamond-shaped `extends` graph costs linear time.
type Resolved = HashMap<PathBuf, Option<ProfileDoc>>;

/// Directories searched, after the profile's own directory, for a parent named in `extends`.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    /// `~/.km/profiles`, then each `KM_PROFILE_PATH` entry.
    pub dirs: Vec<PathBuf>,
}

/// One problem found in a profile or its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(u64, u64)>,
    /// The key path, e.g. `spec.cli.vscodeEnabled`, when known.
    pub key_path: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if let Some(path) = &self.key_path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ProfileError {
    fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            position: None,
            key_path: None,
            message: message.into(),
        }
    }

    fn at(mut self, line: u64, column: u64) -> Self {
        self.position = Some((line, column));
        self
    }

    fn key(mut self, path: &str) -> Self {
        self.key_path = Some(path.to_owned());
        self
    }
}

/// Loads the profile at `path`, resolves its parents and checks the result.
///
/// Returns every error found rather than stopping at the first.
pub fn load_profile(path: &Path, search: &SearchPath) -> Result<Profile, Vec<ProfileError>> {
    let mut errors = Vec::new();
    let mut chain = Vec::new();
    let mut resolved = Resolved::new();
    let leaf = parse_file(path);
    let merged = match leaf {
        Ok(doc) => resolve(
            path,
            doc.clone(),
            search,
            &mut chain,
            &mut resolved,
            &mut errors,
        )
        .map(|m| (doc, m)),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let Some((leaf, merged)) = merged else {
        return Err(errors);
    };
    let profile = finish(path, &leaf, merged, &mut errors);
    if errors.is_empty() {
        Ok(profile)
    } else {
        Err(errors)
    }
}

fn parse_file(path: &Path) -> Result<ProfileDoc, ProfileError> {
    let text = read_profile_text(path).map_err(|message| ProfileError::new(path, message))?;
    parse_text(path, &text)
}

/// Reads a profile: a regular file (never a FIFO or device, which could block or never end)
/// of at most [`MAX_PROFILE_BYTES`], in UTF-8.
fn read_profile_text(path: &Path) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read the profile: {e}");
    let not_regular =
        "not a regular file (a profile must be a YAML file, not a directory, pipe or device)";
    // Checked before opening: opening a FIFO for reading blocks until a writer appears.
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(not_regular.into());
    }
    let file = std::fs::File::open(path).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(not_regular.into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(format!(
            "larger than {} KiB; a profile is a short YAML file",
            MAX_PROFILE_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn parse_text(path: &Path, text: &str) -> Result<ProfileDoc, ProfileError> {
    let mut key_path = String::new();
    let parsed: Result<ProfileDoc, serde_saphyr::Error> =
        serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                // `Spanned` wrappers show up as a `.value` segment; users never wrote it.
                key_path = e.path().to_string().replace(".value", "");
                e.into_inner()
            })
        });
    parsed.map_err(|e| {
        let mut error = ProfileError::new(path, first_line_of(&e));
        if let Some(location) = e.location() {
            error = error.at(location.line(), location.column());
        }
        if !key_path.is_empty() && key_path != "." {
            error = error.key(&key_path);
        }
        error
    })
}

/// serde-saphyr's message starts with `error: line L column C: …` and adds a snippet; km
/// prints the place itself, so keep only the message.
fn first_line_of(error: &serde_saphyr::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.split_once(": ") {
        Some((place, rest)) if place.starts_with("line ") => rest.to_owned(),
        _ => first.to_owned(),
    }
}

fn resolve(
    path: &Path,
    doc: ProfileDoc,
    search: &SearchPath,
    chain: &mut Vec<PathBuf>,
    resolved: &mut Resolved,
    errors: &mut Vec<ProfileError>,
) -> Option<ProfileDoc> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if chain.contains(&canonical) {
        let names: Vec<String> = chain
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| display_name(p))
            .collect();
        errors.push(ProfileError::new(
            path,
            format!("extends cycle: {}", names.join(" → ")),
        ));
        return None;
    }
    if chain.len() > MAX_DEPTH {
        errors.push(ProfileError::new(
            path,
            format!("extends chain is deeper than {MAX_DEPTH} levels"),
        ));
        return None;
    }
    chain.push(canonical);
    let mut inherited: Option<ProfileDoc> = None;
    let mut ok = true;
    let (names, place) = match &doc.extends {
        Some(spanned) => (spanned.value.names(), Some(spanned.referenced)),
        None => (Vec::new(), None),
    };
    for name in names {
        let located = |e: ProfileError| match place {
            Some(at) => e.at(at.line(), at.column()),
            None => e,
        };
        let Some(parent_path) = find_parent(path, &name, search) else {
            let mut places = vec![display_dir(path)];
            places.extend(search.dirs.iter().map(|d| d.display().to_string()));
            errors.push(located(
                ProfileError::new(
                    path,
                    format!(
                        "parent profile {:?} not found (looked for {0}.yaml in {1})",
                        name,
                        places.join(", ")
                    ),
                )
                .key("extends"),
            ));
            ok = false;
            continue;
        };
        let key = parent_path
            .canonicalize()
            .unwrap_or_else(|_| parent_path.clone());
        let parent = if let Some(done) = resolved.get(&key) {
            // Its errors, if any, were reported the first time.
            done.clone()
        } else {
            let parent = match parse_file(&parent_path) {
                Ok(parent) => resolve(&parent_path, parent, search, chain, resolved, errors),
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
            // A parent cut short by a cycle in this chain is not cached as done.
            if !chain.contains(&key) {
                resolved.insert(key, parent.clone());
            }
            parent
        };
        match parent {
            Some(parent) => inherited = Some(parent.merge(inherited.unwrap_or_default())),
            None => ok = false,
        }
    }
    chain.pop();
    if !ok {
        return None;
    }
    Some(match inherited {
        Some(parent) => doc.merge(parent),
        None => ProfileDoc {
            extends: None,
            ..doc
        },
    })
}

fn display_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn display_dir(path: &Path) -> String {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.display().to_string(),
        _ => ".".into(),
    }
}

fn find_parent(child: &Path, name: &str, search: &SearchPath) -> Option<PathBuf> {
    let safe = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.');
    if !safe {
        return None;
    }
    let own_dir = PathBuf::from(display_dir(child));
    std::iter::once(own_dir)
        .chain(search.dirs.iter().cloned())
        .flat_map(|dir| {
            [
                dir.join(format!("{name}.yaml")),
                dir.join(format!("{name}.yml")),
            ]
        })
        .find(|candidate| candidate.is_file())
}

/// `metadata.name` is shown in `km list` and stored in records, so it is a plain word.
fn is_valid_profile_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn finish(
    path: &Path,
    leaf: &ProfileDoc,
    mut doc: ProfileDoc,
    errors: &mut Vec<ProfileError>,
) -> Profile {
    match doc.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => errors.push(
            ProfileError::new(
                path,
                format!("unsupported apiVersion {other:?}; use {API_VERSION}"),
            )
            .key("apiVersion"),
        ),
        None => doc.api_version = Some(API_VERSION.into()),
    }
    match doc.kind.as_deref() {
        Some(KIND) => {}
        Some(other) => errors.push(
            ProfileError::new(path, format!("unsupported kind {other:?}; use {KIND}")).key("kind"),
        ),
        None => doc.kind = Some(KIND.into()),
    }
    let name = leaf.metadata.as_ref().and_then(|m| m.name.clone());
    match &name {
        None => {
            errors.push(ProfileError::new(path, "metadata.name is required").key("metadata.name"));
        }
        Some(name) if !is_valid_profile_name(name) => errors.push(
            ProfileError::new(
                path,
                format!(
                    "invalid name {:?}: use 1-63 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit",
                    name.escape_debug().to_string()
                ),
            )
            .key("metadata.name"),
        ),
        Some(_) => {}
    }
    let metadata = doc.metadata.get_or_insert_with(Default::default);
    metadata.name = name.clone();
    let prefix = match &metadata.prefix {
        Some(spanned) => {
            if let Err(e) = validate_prefix(&spanned.value) {
                errors.push(
                    ProfileError::new(path, e.to_string())
                        .at(spanned.referenced.line(), spanned.referenced.column())
                        .key("metadata.prefix"),
                );
            }
            spanned.value.clone()
        }
        None => DEFAULT_PREFIX.to_owned(),
    };
    let spec = doc.spec.get_or_insert_with(Default::default);
    let runtime = spec.runtime.get_or_insert_with(Default::default);
    let substrate = *runtime.substrate.get_or_insert(Substrate::Local);
    if substrate == Substrate::Local {
        runtime.isolation.get_or_insert_default();
        runtime.network.get_or_insert_default();
        // A misspelt or forgotten `substrate: ec2` would otherwise launch nothing where asked.
        for (key, set) in [
            ("instanceType", runtime.instance_type.is_some()),
            ("region", runtime.region.is_some()),
            ("ami", runtime.ami.is_some()),
        ] {
            if set {
                errors.push(
                    ProfileError::new(
                        path,
                        format!(
                            "spec.runtime.{key} applies to ec2 sandboxes only, and this profile makes a local one (add `substrate: ec2`, or remove the field)"
                        ),
                    )
                    .key(&format!("spec.runtime.{key}")),
                );
            }
        }
    } else {
        for (key, set) in [
            ("isolation", runtime.isolation.is_some()),
            ("network", runtime.network.is_some()),
        ] {
            if set {
                errors.push(
                    ProfileError::new(
                        path,
                        format!(
                            "spec.runtime.{key} applies to local sandboxes only; an {substrate} sandbox's network is its subnet's (remove the field, or set substrate: local)"
                        ),
                    )
                    .key(&format!("spec.runtime.{key}")),
                );
            }
        }
    }
    let cli = spec.cli.get_or_insert_with(Default::default);
    let vscode_enabled = *cli.vscode_enabled.get_or_insert(true);
    Profile {
        name: name.unwrap_or_default(),
        prefix,
        substrate,
        vscode_enabled,
        resolved: doc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn vscode_defaults_true_and_headless_child_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "base.yaml",
            "metadata:\n  name: base\n  prefix: lrn2\n",
        );
        let child = write(
            dir.path(),
            "child.yaml",
            "metadata:\n  name: child\nextends: base\nspec:\n  cli:\n    vscodeEnabled: false\n",
        );
        let base = load_profile(&dir.path().join("base.yaml"), &SearchPath::default()).unwrap();
        assert!(base.vscode_enabled);
        let child = load_profile(&child, &SearchPath::default()).unwrap();
        assert!(!child.vscode_enabled);
        assert_eq!(child.prefix, "lrn2");
        assert_eq!(child.name, "child");
        assert!(child.to_yaml().contains("vscodeEnabled: false"));
    }

    #[test]
    fn local_sandboxes_are_isolated_with_host_network_unless_a_profile_says_otherwise() {
        use crate::profile::{Isolation, Network};
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "base.yaml", "metadata:\n  name: base\n");
        let offline = write(
            dir.path(),
            "offline.yaml",
            "metadata:\n  name: offline\nextends: base\nspec:\n  runtime:\n    network: none\n",
        );
        let open = write(
            dir.path(),
            "open.yaml",
            "metadata:\n  name: open\nextends: offline\nspec:\n  runtime:\n    isolation: none\n",
        );
        let base = load_profile(&dir.path().join("base.yaml"), &SearchPath::default()).unwrap();
        assert_eq!(base.runtime().isolation, Some(Isolation::Namespaces));
        assert_eq!(base.runtime().network, Some(Network::Host));
        let offline = load_profile(&offline, &SearchPath::default()).unwrap();
        assert_eq!(offline.runtime().network, Some(Network::None));
        assert!(offline.to_yaml().contains("network: none"));
        let open = load_profile(&open, &SearchPath::default()).unwrap();
        assert_eq!(open.runtime().isolation, Some(Isolation::None));
        assert_eq!(open.runtime().network, Some(Network::None));
    }

    #[test]
    fn ec2_fields_on_a_local_profile_are_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "half.yaml",
            "metadata:\n  name: half\nspec:\n  runtime:\n    region: eu-west-1\n    instanceType: t3.small\n",
        );
        let errors = load_profile(&p, &SearchPath::default()).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text.iter()
                .any(|e| e.contains("spec.runtime.region") && e.contains("ec2 sandboxes only")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|e| e.contains("spec.runtime.instanceType")),
            "{text:?}"
        );
    }

    #[test]
    fn isolation_and_network_on_an_ec2_profile_are_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "cloud.yaml",
            "metadata:\n  name: cloud\nspec:\n  runtime:\n    substrate: ec2\n    network: none\n    isolation: none\n",
        );
        let errors = load_profile(&p, &SearchPath::default()).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("spec.runtime.isolation") && text[0].contains("local sandboxes only"),
            "{text:?}"
        );
        assert!(text[1].contains("spec.runtime.network"), "{text:?}");
        let typo = write(
            dir.path(),
            "typo.yaml",
            "metadata:\n  name: typo\nspec:\n  runtime:\n    network: offline\n",
        );
        assert!(load_profile(&typo, &SearchPath::default()).is_err());
    }

    #[test]
    fn later_parents_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "metadata:\n  name: a\n  prefix: aa\n");
        write(dir.path(), "b.yaml", "metadata:\n  name: b\n  prefix: bb\n");
        let child = write(
            dir.path(),
            "c.yaml",
            "metadata:\n  name: c\nextends: [a, b]\n",
        );
        assert_eq!(
            load_profile(&child, &SearchPath::default()).unwrap().prefix,
            "bb"
        );
    }

    #[test]
    fn unknown_keys_report_path_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "p.yaml",
            "metadata:\n  name: p\nspec:\n  cli:\n    vscodeEnabld: true\n",
        );
        let errors = load_profile(&p, &SearchPath::default()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].position, Some((5, 5)));
        assert_eq!(errors[0].key_path.as_deref(), Some("spec.cli.vscodeEnabld"));
    }

    #[test]
    fn cycles_missing_parents_and_bad_prefixes_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "xa.yaml",
            "metadata:\n  name: xa\nextends: ya\n",
        );
        let y = write(
            dir.path(),
            "ya.yaml",
            "metadata:\n  name: ya\nextends: xa\n",
        );
        let errors = load_profile(&y, &SearchPath::default()).unwrap_err();
        assert!(errors[0].message.contains("ya → xa → ya"), "{errors:?}");

        let z = write(
            dir.path(),
            "z.yaml",
            "metadata:\n  name: z\n  prefix: Bad-1\nextends: [nope, gone]\n",
        );
        let errors = load_profile(&z, &SearchPath::default()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].message.contains("\"nope\""));
        assert!(errors[1].message.contains("\"gone\""));

        let w = write(
            dir.path(),
            "w.yaml",
            "metadata:\n  name: w\n  prefix: Bad-1\n",
        );
        let errors = load_profile(&w, &SearchPath::default()).unwrap_err();
        assert_eq!(errors[0].key_path.as_deref(), Some("metadata.prefix"));
        assert_eq!(errors[0].position, Some((3, 11)));
    }

    #[test]
    fn depth_over_ten_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p0.yaml", "metadata:\n  name: p0\n");
        for i in 1..=12 {
            write(
                dir.path(),
                &format!("p{i}.yaml"),
                &format!("metadata:\n  name: p{i}\nextends: p{}\n", i - 1),
            );
        }
        assert!(load_profile(&dir.path().join("p10.yaml"), &SearchPath::default()).is_ok());
        let errors =
            load_profile(&dir.path().join("p12.yaml"), &SearchPath::default()).unwrap_err();
        assert!(errors[0].message.contains("deeper than 10"), "{errors:?}");
    }

    #[test]
    fn each_parent_is_resolved_once_however_many_children_name_it() {
        let dir = tempfile::tempdir().unwrap();
        // p0 is broken; every other level names the level below six times.
        write(dir.path(), "p0.yaml", "metadata:\n  name: p0\n  bogus: 1\n");
        let depth = 5;
        for level in 1..=depth {
            let below = format!("p{}", level - 1);
            let parents = [below.as_str(); 6].join(", ");
            write(
                dir.path(),
                &format!("p{level}.yaml"),
                &format!("metadata:\n  name: p{level}\nextends: [{parents}]\n"),
            );
        }
        let top = dir.path().join(format!("p{depth}.yaml"));
        let errors = load_profile(&top, &SearchPath::default()).unwrap_err();
        let about_p0 = errors
            .iter()
            .filter(|e| e.file.ends_with("p0.yaml"))
            .count();
        assert_eq!(
            about_p0, 1,
            "p0 was read once, not 6^{depth} times: {errors:?}"
        );
    }

    #[test]
    fn fifos_devices_and_huge_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let huge = dir.path().join("huge.yaml");
        let mut text = String::from("metadata:\n  name: huge\n# ");
        text.push_str(&"x".repeat(MAX_PROFILE_BYTES as usize));
        std::fs::write(&huge, text).unwrap();
        for (path, expected) in [
            (fifo.as_path(), "not a regular file"),
            (Path::new("/dev/zero"), "not a regular file"),
            (dir.path(), "not a regular file"),
            (huge.as_path(), "larger than 1024 KiB"),
        ] {
            let errors = load_profile(path, &SearchPath::default()).unwrap_err();
            assert!(
                errors[0].message.contains(expected),
                "{}: {}",
                path.display(),
                errors[0]
            );
        }
    }

    #[test]
    fn names_with_control_characters_or_spaces_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (file, name) in [
            ("esc", "\"evil\\e[31m\""),
            ("row", "\"x\\nsb-00000001 forged\""),
            ("space", "\"a b\""),
            ("dot", "\".hidden\""),
        ] {
            let path = write(dir.path(), file, &format!("metadata:\n  name: {name}\n"));
            let errors = load_profile(&path, &SearchPath::default()).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.key_path.as_deref() == Some("metadata.name")
                        && !e.message.chars().any(char::is_control)),
                "{name}: {errors:?}"
            );
        }
        let fine = write(dir.path(), "fine", "metadata:\n  name: My_Profile-2.1\n");
        assert!(load_profile(&fine, &SearchPath::default()).is_ok());
    }
}
