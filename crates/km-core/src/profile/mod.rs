//! Sandbox profiles: the YAML schema, `extends` inheritance and the resolved result.

mod load;
mod merge;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

pub use load::{ProfileError, SearchPath, load_profile};
pub use merge::Merge;

/// The only `apiVersion` km understands.
pub const API_VERSION: &str = "klankermaker.ai/v1alpha1";
/// The only `kind` km understands.
pub const KIND: &str = "SandboxProfile";

/// One profile file as written; every field is optional so a child can inherit it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileDoc {
    /// Must be [`API_VERSION`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Must be [`KIND`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name, ID prefix and labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Parent profiles, by file base name; later parents override earlier ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<Spanned<Extends>>,
    /// What the sandbox runs on and how the operator reaches it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
}

/// `extends: base` or `extends: [a, b]`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Extends {
    /// A single parent.
    One(String),
    /// Several parents, applied in order.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Extends {
    // Written by hand: serde's untagged buffering loses the YAML locations km reports.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtendsVisitor;
        impl<'de> serde::de::Visitor<'de> for ExtendsVisitor {
            type Value = Extends;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a profile name or a list of profile names")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Extends, E> {
                Ok(Extends::One(name.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Extends, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Extends::Many(names))
            }
        }
        deserializer.deserialize_any(ExtendsVisitor)
    }
}

impl Extends {
    fn names(&self) -> Vec<String> {
        match self {
            Self::One(name) => vec![name.clone()],
            Self::Many(names) => names.clone(),
        }
    }
}

/// `metadata`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// The profile's name (required in the profile being used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sandbox ID prefix, `^[a-z][a-z0-9]{0,11}$`; default `sb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Spanned<String>>,
    /// Free-form labels, merged per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `spec`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// `spec.runtime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// `spec.cli`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli: Option<CliSpec>,
}

/// The substrate of a profile that names none: a sandbox on this machine.
pub const DEFAULT_SUBSTRATE: &str = "local";

/// `spec.runtime`: which substrate makes the sandbox, and that substrate's own fields.
///
/// km-core knows no substrate's fields: each provider reads its own with [`Runtime::section`]
/// (a type of its own, refusing fields it does not take), so adding a kind of sandbox never
/// touches the shared schema. Every value keeps the place it was written, for errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runtime {
    /// `substrate`: `local` when unset.
    pub substrate: Option<RuntimeField>,
    /// Every other field, by the key written (`instanceType`, `network`, …). Each is one
    /// scalar, kept as its text (`t3.small`, `none`, `20`): a provider's section type reads
    /// strings, or enums by name.
    pub fields: BTreeMap<String, RuntimeField>,
}

/// One `spec.runtime` value, with where its key was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeField {
    /// The value as written.
    pub value: String,
    /// 1-based line and column of the value; `None` for a value km filled in.
    pub place: Option<(u64, u64)>,
}

/// One field of `spec.runtime` that its substrate's provider refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The key as written (`network`).
    pub key: String,
    /// 1-based line and column of its value, when known.
    pub position: Option<(u64, u64)>,
    /// What is wrong.
    pub message: String,
}

impl Runtime {
    /// The substrate: `local` unless the profile names another.
    pub fn substrate(&self) -> &str {
        self.substrate
            .as_ref()
            .map_or(DEFAULT_SUBSTRATE, |spanned| spanned.value.as_str())
    }

    /// Where `key` was written, when known.
    pub fn position_of(&self, key: &str) -> Option<(u64, u64)> {
        if key == "substrate" {
            self.substrate.as_ref()?.place
        } else {
            self.fields.get(key)?.place
        }
    }

    /// The substrate's own fields read as `T`, whose fields are `keys` (as written, camelCase).
    /// A field outside `keys`, or a value `T` refuses, is a [`FieldError`] at its place.
    pub fn section<T: serde::de::DeserializeOwned>(
        &self,
        keys: &[&str],
    ) -> Result<T, Vec<FieldError>> {
        let error = |key: &str, message: String| FieldError {
            key: key.to_owned(),
            position: self.position_of(key),
            message,
        };
        let unknown: Vec<FieldError> = self
            .fields
            .keys()
            .filter(|key| !keys.contains(&key.as_str()))
            .map(|key| {
                error(
                    key,
                    format!(
                        "unknown field `{key}`: a {} sandbox's runtime takes substrate, {}",
                        self.substrate(),
                        keys.join(", ")
                    ),
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let object: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), serde_json::Value::String(value.value.clone())))
            .collect();
        serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            vec![error(&key, message)]
        })
    }

    /// This runtime with its substrate's fields replaced by `section` (defaults filled in),
    /// keeping the place of each field the profile wrote.
    pub fn with_section<T: Serialize>(&self, section: &T) -> Self {
        let written = serde_json::to_value(section).unwrap_or_default();
        let fields = written
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| {
                let value = match value {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Null => return None,
                    other => other.to_string(),
                };
                let place = match self.fields.get(key) {
                    Some(original) if original.value == value => original.place,
                    _ => None,
                };
                Some((key.clone(), RuntimeField { value, place }))
            })
            .collect();
        Self {
            substrate: self.substrate.clone(),
            fields,
        }
    }
}

impl<'de> Deserialize<'de> for Runtime {
    // By hand: each value is kept with its place, which serde's flatten would lose.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuntimeVisitor;
        impl<'de> serde::de::Visitor<'de> for RuntimeVisitor {
            type Value = Runtime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of runtime settings (substrate and its fields)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Runtime, A::Error> {
                let mut runtime = Runtime::default();
                // The key is read as plain text so that errors keep naming it; the place kept
                // is its value's.
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<Spanned<Option<String>>>()?;
                    let at = value.referenced;
                    // `key: ~` says nothing, as if the key were left out.
                    let Some(text) = value.value else { continue };
                    let field = RuntimeField {
                        value: text,
                        place: (at.line() > 0).then(|| (at.line(), at.column())),
                    };
                    if key == "substrate" {
                        runtime.substrate = Some(field);
                    } else {
                        runtime.fields.insert(key, field);
                    }
                }
                Ok(runtime)
            }
        }
        deserializer.deserialize_map(RuntimeVisitor)
    }
}

impl Serialize for Runtime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let Some(substrate) = &self.substrate {
            map.serialize_entry("substrate", &substrate.value)?;
        }
        for (key, value) in &self.fields {
            map.serialize_entry(key, &value.value)?;
        }
        map.end()
    }
}

/// `spec.cli`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CliSpec {
    /// Provision sshd + authorized_keys at boot; omitted inherits, default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vscode_enabled: Option<bool>,
}

/// A profile with inheritance applied and defaults filled in.
#[derive(Debug, Clone)]
pub struct Profile {
    /// `metadata.name`.
    pub name: String,
    /// The ID prefix.
    pub prefix: String,
    /// The substrate that makes the sandbox (`local` unless the profile names another).
    pub substrate: String,
    /// Whether the sandbox gets sshd and the operator's key.
    pub vscode_enabled: bool,
    /// The fully resolved document, as `km validate` prints it.
    pub resolved: ProfileDoc,
}

impl Profile {
    /// The resolved `spec.runtime`: the substrate and its fields, empty where unset.
    pub fn runtime(&self) -> Runtime {
        self.resolved
            .spec
            .as_ref()
            .and_then(|spec| spec.runtime.clone())
            .unwrap_or_default()
    }

    /// Replaces the resolved `spec.runtime` (its provider's, with defaults filled in).
    pub fn set_runtime(&mut self, runtime: Runtime) {
        self.resolved
            .spec
            .get_or_insert_with(Default::default)
            .runtime = Some(runtime);
    }

    /// The resolved profile as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(&self.resolved).unwrap_or_default()
    }
}
