//! Inheritance rules: the child's explicit value wins, an omitted value inherits, maps merge
//! per key and lists concatenate (parent first) with duplicates dropped.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::{CliSpec, Metadata, ProfileDoc, Runtime, RuntimeField, Spec};

/// Combines a child (`self`) with its parent.
pub trait Merge {
    /// Returns the child with everything it leaves unset taken from `parent`.
    #[must_use]
    fn merge(self, parent: Self) -> Self;
}

macro_rules! child_wins {
    ($($t:ty),*) => {$(
        impl Merge for $t {
            fn merge(self, _parent: Self) -> Self {
                self
            }
        }
    )*};
}

child_wins!(String, bool, Spanned<String>, RuntimeField);

impl<T: Merge> Merge for Option<T> {
    fn merge(self, parent: Self) -> Self {
        match (self, parent) {
            (Some(child), Some(parent)) => Some(child.merge(parent)),
            (child, parent) => child.or(parent),
        }
    }
}

impl<V: Merge> Merge for BTreeMap<String, V> {
    fn merge(self, mut parent: Self) -> Self {
        for (key, child_value) in self {
            let merged = match parent.remove(&key) {
                Some(parent_value) => child_value.merge(parent_value),
                None => child_value,
            };
            parent.insert(key, merged);
        }
        parent
    }
}

impl<T: PartialEq> Merge for Vec<T> {
    fn merge(self, mut parent: Self) -> Self {
        for item in self {
            if !parent.contains(&item) {
                parent.push(item);
            }
        }
        parent
    }
}

impl Merge for ProfileDoc {
    fn merge(self, parent: Self) -> Self {
        Self {
            api_version: self.api_version.merge(parent.api_version),
            kind: self.kind.merge(parent.kind),
            metadata: self.metadata.merge(parent.metadata),
            // Each file names its own parents; they are resolved, never inherited.
            extends: None,
            spec: self.spec.merge(parent.spec),
        }
    }
}

impl Merge for Metadata {
    fn merge(self, parent: Self) -> Self {
        Self {
            name: self.name.merge(parent.name),
            prefix: self.prefix.merge(parent.prefix),
            labels: self.labels.merge(parent.labels),
        }
    }
}

impl Merge for Spec {
    fn merge(self, parent: Self) -> Self {
        Self {
            runtime: self.runtime.merge(parent.runtime),
            cli: self.cli.merge(parent.cli),
        }
    }
}

impl Merge for Runtime {
    fn merge(self, parent: Self) -> Self {
        Self {
            substrate: self.substrate.merge(parent.substrate),
            fields: self.fields.merge(parent.fields),
        }
    }
}

impl Merge for CliSpec {
    fn merge(self, parent: Self) -> Self {
        Self {
            vscode_enabled: self.vscode_enabled.merge(parent.vscode_enabled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(v: Option<bool>) -> Option<Spec> {
        Some(Spec {
            runtime: None,
            cli: Some(CliSpec { vscode_enabled: v }),
        })
    }

    fn vscode(doc: &ProfileDoc) -> Option<bool> {
        doc.spec.as_ref()?.cli.as_ref()?.vscode_enabled
    }

    #[test]
    fn explicit_false_beats_parent_true_and_omitted_inherits() {
        let parent = ProfileDoc {
            spec: cli(Some(true)),
            ..Default::default()
        };
        let child = ProfileDoc {
            spec: cli(Some(false)),
            ..Default::default()
        };
        assert_eq!(vscode(&child.merge(parent.clone())), Some(false));
        let silent = ProfileDoc {
            spec: cli(None),
            ..Default::default()
        };
        assert_eq!(vscode(&silent.merge(parent)), Some(true));
    }

    #[test]
    fn maps_merge_per_key_and_lists_concatenate_without_duplicates() {
        let parent: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "1".into())].into();
        let child: BTreeMap<String, String> = [("b".into(), "2".into())].into();
        let merged = child.merge(parent);
        assert_eq!(merged["a"], "1");
        assert_eq!(merged["b"], "2");
        assert_eq!(vec![2, 3].merge(vec![1, 2]), vec![1, 2, 3]);
    }
}
