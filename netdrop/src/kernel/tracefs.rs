//! tracefs: finding (or mounting) it, and reading tracepoint format files.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use netdrop_common::{OFFSET_NONE, TracepointLayout};

use crate::error::Error;

/// Where tracefs is usually found.
const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Returns the tracefs mount point, mounting it at `/sys/kernel/tracing` if nothing is
/// mounted yet (what `mount -t tracefs nodev /sys/kernel/tracing` would do).
pub fn find_or_mount() -> Result<PathBuf, Error> {
    if let Some(p) = CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.join("events").is_dir())
    {
        return Ok(p.to_owned());
    }
    let target = Path::new(CANDIDATES[0]);
    let c = |s: &str| CString::new(s).expect("no NUL in literal");
    let (src, dst, fstype) = (c("nodev"), c(CANDIDATES[0]), c("tracefs"));
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 && target.join("events").is_dir() {
        tracing::info!("mounted tracefs at {}", target.display());
        return Ok(target.to_owned());
    }
    Err(Error::NoTracefs {
        reason: std::io::Error::last_os_error().to_string(),
    })
}

/// One `field:` line of a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Declaration, e.g. `void * skbaddr` or `enum skb_drop_reason reason`.
    pub decl: String,
    /// Field name (last identifier of the declaration).
    pub name: String,
    /// Byte offset in the record.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// A parsed `events/<category>/<name>/format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    /// Tracepoint id.
    pub id: Option<u32>,
    /// Every field, common ones included.
    pub fields: Vec<Field>,
    /// The `print fmt:` line.
    pub print_fmt: String,
}

impl Format {
    /// Parses the text of a format file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields = Vec::new();
        let mut id = None;
        let mut print_fmt = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("ID:") {
                id = rest.trim().parse().ok();
            } else if let Some(rest) = line.strip_prefix("print fmt:") {
                print_fmt = rest.trim().to_owned();
            } else if line.starts_with("field:") {
                fields.push(parse_field(line).ok_or_else(|| format!("bad field line: {line}"))?);
            }
        }
        if fields.is_empty() {
            return Err("no fields".to_owned());
        }
        Ok(Self {
            id,
            fields,
            print_fmt,
        })
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Record offsets for the `skb:kfree_skb` program.
    pub fn kfree_skb_layout(&self) -> Result<TracepointLayout, String> {
        let need = |n: &str| {
            self.field(n)
                .map(|f| f.offset)
                .ok_or_else(|| format!("skb:kfree_skb has no `{n}` field"))
        };
        let opt = |n: &str| self.field(n).map_or(OFFSET_NONE, |f| f.offset);
        Ok(TracepointLayout {
            skbaddr: need("skbaddr")?,
            location: need("location")?,
            reason: opt("reason"),
            rx_sk: opt("rx_sk"),
        })
    }

    /// `{ value, "NAME" }` pairs of the first `__print_symbolic` in the print format:
    /// the drop reason names, on kernels that print them.
    pub fn symbolic_values(&self) -> Vec<(i64, String)> {
        let Some(start) = self.print_fmt.find("__print_symbolic(") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rest = &self.print_fmt[start..];
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let entry = &rest[open + 1..open + close];
            rest = &rest[open + close + 1..];
            let Some((value, name)) = entry.split_once(',') else {
                continue;
            };
            let name = name.trim().trim_matches('"');
            if let Some(v) = parse_int(value.trim()) {
                out.push((v, name.to_owned()));
            }
        }
        out
    }
}

fn parse_field(line: &str) -> Option<Field> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim().to_owned());
        } else if let Some(o) = part.strip_prefix("offset:") {
            offset = o.trim().parse().ok();
        } else if let Some(s) = part.strip_prefix("size:") {
            size = s.trim().parse().ok();
        }
    }
    let decl = decl?;
    // `char name[16]` -> `name`; `void * skbaddr` -> `skbaddr`.
    let last = decl.split_whitespace().last()?;
    let name = last.split('[').next()?.trim_start_matches('*').to_owned();
    Some(Field {
        decl,
        name,
        offset: offset?,
        size: size?,
    })
}

fn parse_int(s: &str) -> Option<i64> {
    match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn fixture(name: &str) -> Format {
        Format::parse(&testdata::read(&format!("tracefs/{name}"))).unwrap()
    }

    #[test]
    fn layout_before_drop_reasons() {
        let f = fixture("kfree_skb-5.10.format");
        assert_eq!(
            f.kfree_skb_layout().unwrap(),
            TracepointLayout {
                skbaddr: 8,
                location: 16,
                reason: OFFSET_NONE,
                rx_sk: OFFSET_NONE
            }
        );
        assert!(f.symbolic_values().is_empty());
    }

    #[test]
    fn layout_with_reason() {
        let f = fixture("kfree_skb-6.1.format");
        assert_eq!(
            f.kfree_skb_layout().unwrap(),
            TracepointLayout {
                skbaddr: 8,
                location: 16,
                reason: 28,
                rx_sk: OFFSET_NONE
            }
        );
        let values = f.symbolic_values();
        assert!(values.contains(&(2, "NO_SOCKET".to_owned())), "{values:?}");
    }

    #[test]
    fn layout_with_rx_sk() {
        let f = fixture("kfree_skb-6.18.format");
        assert_eq!(
            f.kfree_skb_layout().unwrap(),
            TracepointLayout {
                skbaddr: 8,
                location: 16,
                reason: 36,
                rx_sk: 24
            }
        );
        let values = f.symbolic_values();
        assert!(values.contains(&(3, "NO_SOCKET".to_owned())));
        assert!(values.contains(&(127, "RECURSION_LIMIT".to_owned())));
        assert_eq!(f.id, Some(2310));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Format::parse("hello").is_err());
        let f = Format::parse("format:\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n")
            .unwrap();
        assert_eq!(
            f.kfree_skb_layout().unwrap_err(),
            "skb:kfree_skb has no `skbaddr` field"
        );
    }
}
