//! Reading profile files, resolving `extends`, and reporting every error with its place.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{API_VERSION, KIND, Merge, Profile, ProfileDoc};
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
    // Only the substrate's provider knows its fields: it reads and checks them (km's
    // platform registry), after inheritance is resolved here.
    let runtime = spec.runtime.get_or_insert_with(Default::default);
    let substrate = runtime
        .substrate
        .get_or_insert_with(|| super::RuntimeField {
            value: super::DEFAULT_SUBSTRATE.to_owned(),
            place: None,
        })
        .value
        .clone();
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

    /// A provider's section, as a test stands in for one.
    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Section {
        #[serde(default)]
        network: Mode,
        #[serde(skip_serializing_if = "Option::is_none")]
        instance_type: Option<String>,
    }

    #[derive(Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Host,
        None,
    }

    const KEYS: &[&str] = &["network", "instanceType"];

    #[test]
    fn runtime_fields_inherit_per_key_and_a_provider_reads_them_as_its_own_type() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "base.yaml",
            "metadata:\n  name: base\nspec:\n  runtime:\n    network: none\n    instanceType: t3.small\n",
        );
        let child = write(
            dir.path(),
            "child.yaml",
            "metadata:\n  name: child\nextends: base\nspec:\n  runtime:\n    substrate: ec2\n    instanceType: t3.large\n",
        );
        let child = load_profile(&child, &SearchPath::default()).unwrap();
        assert_eq!(child.substrate, "ec2");
        let section: Section = child.runtime().section(KEYS).unwrap();
        assert_eq!(
            section,
            Section {
                network: Mode::None,
                instance_type: Some("t3.large".into())
            }
        );
        let yaml = child.to_yaml();
        assert!(
            yaml.contains("substrate: ec2") && yaml.contains("instanceType: t3.large"),
            "{yaml}"
        );
        let base = load_profile(&dir.path().join("base.yaml"), &SearchPath::default()).unwrap();
        assert_eq!(base.substrate, "local", "the default substrate");
        assert!(
            base.to_yaml().contains("substrate: local"),
            "resolved, it says so"
        );
    }

    #[test]
    fn a_field_the_provider_does_not_take_or_a_bad_value_is_refused_at_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "odd.yaml",
            "metadata:\n  name: odd\nspec:\n  runtime:\n    regoin: eu-west-1\n    ami: ami-1\n",
        );
        let runtime = load_profile(&p, &SearchPath::default()).unwrap().runtime();
        let errors = runtime.section::<Section>(KEYS).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["ami", "regoin"]);
        assert_eq!(errors[0].position, Some((6, 10)));
        assert_eq!(errors[1].position, Some((5, 13)));
        assert_eq!(
            errors[1].message,
            "unknown field `regoin`: a local sandbox's runtime takes substrate, network, instanceType"
        );
        let typo = write(
            dir.path(),
            "typo.yaml",
            "metadata:\n  name: typo\nspec:\n  runtime:\n    network: offline\n",
        );
        let runtime = load_profile(&typo, &SearchPath::default())
            .unwrap()
            .runtime();
        let errors = runtime.section::<Section>(KEYS).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "network");
        assert_eq!(errors[0].position, Some((5, 14)));
        assert!(errors[0].message.contains("offline"), "{errors:?}");
    }

    #[test]
    fn a_null_runtime_field_is_left_unset() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "null.yaml",
            "metadata:\n  name: unset\nspec:\n  runtime:\n    network: ~\n    instanceType: null\n",
        );
        let runtime = load_profile(&p, &SearchPath::default()).unwrap().runtime();
        assert!(runtime.fields.is_empty(), "{runtime:?}");
        let section: Section = runtime.section(KEYS).unwrap();
        assert_eq!(section.network, Mode::Host, "the provider's default");
    }

    #[test]
    fn a_runtime_field_must_be_a_single_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "list.yaml",
            "metadata:\n  name: list\nspec:\n  runtime:\n    network: [a, b]\n",
        );
        let errors = load_profile(&p, &SearchPath::default()).unwrap_err();
        let text = errors[0].to_string();
        assert!(
            text.contains("list.yaml:5:") && text.contains("spec.runtime.network"),
            "{text}"
        );
    }

    #[test]
    fn a_provider_fills_its_defaults_in_and_keeps_where_each_written_field_was() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "typed.yaml",
            "metadata:\n  name: typed\nspec:\n  runtime:\n    instanceType: t3.small\n",
        );
        let mut profile = load_profile(&p, &SearchPath::default()).unwrap();
        let runtime = profile.runtime();
        let section: Section = runtime.section(KEYS).unwrap();
        profile.set_runtime(runtime.with_section(&section));
        let filled = profile.runtime();
        assert_eq!(filled.fields["network"].value, "host");
        assert_eq!(
            filled.position_of("network"),
            None,
            "km wrote it, not the profile"
        );
        assert_eq!(filled.position_of("instanceType"), Some((5, 19)));
        assert!(profile.to_yaml().contains("network: host"));
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
