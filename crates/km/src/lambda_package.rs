//! Whether a km binary can run as a `provided.al2023` Lambda function: a 64-bit Linux ELF of
//! the function's architecture, within Lambda's size limit, needing no glibc newer than the
//! runtime's. Checked before anything is uploaded, so a package Lambda cannot start is never
//! deployed.

use object::elf::{EM_AARCH64, EM_X86_64, FileHeader64};
use object::read::elf::FileHeader as _;
use object::{Endianness, StringTable};

/// The glibc of Amazon Linux 2023, which `provided.al2023` runs on
/// (<https://docs.aws.amazon.com/linux/al2023/ug/al2023-glibc.html>).
pub(crate) const RUNTIME_GLIBC: (u32, u32) = (2, 34);
/// Lambda's limit on a function's unzipped code
/// (<https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>).
pub(crate) const MAX_UNZIPPED_BYTES: usize = 250 * 1024 * 1024;

/// `GLIBC_2.34` as `(2, 34)`; other version names as `None`.
fn glibc_version(name: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(name).ok()?.strip_prefix("GLIBC_")?;
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// What the binary is, as far as Lambda cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binary {
    /// `x86_64` or `arm64`, Lambda's names.
    pub(crate) architecture: &'static str,
    /// The newest glibc symbol version it needs, if it needs glibc at all.
    pub(crate) glibc: Option<(u32, u32)>,
}

/// Reads the ELF header and the glibc versions the binary needs.
pub(crate) fn inspect(data: &[u8]) -> Result<Binary, String> {
    let header = FileHeader64::<Endianness>::parse(data)
        .map_err(|_| "it is not a 64-bit ELF executable (Lambda runs Linux binaries)".to_owned())?;
    let endian = header
        .endian()
        .map_err(|e| format!("its ELF header is unreadable: {e}"))?;
    let architecture = match header.e_machine(endian) {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "arm64",
        other => {
            return Err(format!(
                "it is built for ELF machine {other}, which Lambda does not run"
            ));
        }
    };
    let sections = header
        .sections(endian, data)
        .map_err(|e| format!("its ELF sections are unreadable: {e}"))?;
    let mut glibc = None;
    let verneed = sections
        .gnu_verneed(endian, data)
        .map_err(|e| format!("its needed symbol versions are unreadable: {e}"))?;
    if let Some((mut needs, link)) = verneed {
        let strings: StringTable<'_, &[u8]> = sections
            .strings(endian, data, link)
            .map_err(|e| format!("its version names are unreadable: {e}"))?;
        while let Some((_, mut versions)) = needs.next().map_err(|e| e.to_string())? {
            while let Some(version) = versions.next().map_err(|e| e.to_string())? {
                let name = version.name(endian, strings).map_err(|e| e.to_string())?;
                glibc = glibc.max(glibc_version(name));
            }
        }
    }
    Ok(Binary {
        architecture,
        glibc,
    })
}

/// Why `data` cannot run as a `provided.al2023` function of `architectures` (Lambda's default,
/// `x86_64`, when empty); `None` when it can.
pub(crate) fn refusal(data: &[u8], architectures: &[String]) -> Option<String> {
    if data.len() > MAX_UNZIPPED_BYTES {
        return Some(format!(
            "it is {} MB, over Lambda's {} MB for unzipped code",
            data.len() / (1024 * 1024),
            MAX_UNZIPPED_BYTES / (1024 * 1024)
        ));
    }
    let binary = match inspect(data) {
        Ok(binary) => binary,
        Err(why) => return Some(why),
    };
    let wanted = architectures.first().map_or("x86_64", String::as_str);
    if binary.architecture != wanted {
        return Some(format!(
            "it is an {} binary and the function runs on {wanted}",
            binary.architecture
        ));
    }
    match binary.glibc {
        Some(needed) if needed > RUNTIME_GLIBC => Some(format!(
            "it needs glibc {}.{}, newer than the {}.{} of provided.al2023",
            needed.0, needed.1, RUNTIME_GLIBC.0, RUNTIME_GLIBC.1
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_version_names_are_read_and_others_ignored() {
        assert_eq!(glibc_version(b"GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version(b"GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version(b"GLIBC_2"), Some((2, 0)));
        assert_eq!(glibc_version(b"GCC_3.0"), None);
        assert_eq!(glibc_version(b"GLIBC_PRIVATE"), None);
        assert!((2, 35) > RUNTIME_GLIBC && (2, 9) < RUNTIME_GLIBC);
    }

    #[test]
    fn a_real_elf_is_read_and_refusals_name_their_reason() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let binary = inspect(&exe).unwrap();
        let this = if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "x86_64"
        };
        assert_eq!(binary.architecture, this);
        assert!(binary.glibc.is_some_and(|v| v >= (2, 2)), "{binary:?}");
        let other = if this == "x86_64" { "arm64" } else { "x86_64" };
        let refused = refusal(&exe, &[other.to_owned()]).unwrap();
        assert!(
            refused.contains(&format!("the function runs on {other}")),
            "{refused}"
        );
        let script = b"#!/bin/sh\necho not a binary\n";
        assert!(refusal(script, &[]).unwrap().contains("not a 64-bit ELF"));
        let mut huge = exe.clone();
        huge.resize(MAX_UNZIPPED_BYTES + 1, 0);
        assert!(
            refusal(&huge, &[])
                .unwrap()
                .contains("over Lambda's 250 MB")
        );
    }
}
