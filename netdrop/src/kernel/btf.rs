//! A small reader for BTF (BPF Type Format): struct member offsets, enum values and
//! function prototypes, which is all netdrop needs from the kernel's type information.
//!
//! Reads `/sys/kernel/btf/vmlinux` and module split BTF (`/sys/kernel/btf/<module>`), whose
//! type ids and string offsets continue those of the base.

use std::{path::Path, sync::Arc};

use thiserror::Error;

const MAGIC: u16 = 0xeb9f;

/// BTF kinds (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Int = 1,
    Ptr = 2,
    Array = 3,
    Struct = 4,
    Union = 5,
    Enum = 6,
    Fwd = 7,
    Typedef = 8,
    Volatile = 9,
    Const = 10,
    Restrict = 11,
    Func = 12,
    FuncProto = 13,
    Var = 14,
    Datasec = 15,
    Float = 16,
    DeclTag = 17,
    TypeTag = 18,
    Enum64 = 19,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Self> {
        use Kind::*;
        Some(match raw {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after the common 12-byte header.
    fn extra_len(self, vlen: usize) -> usize {
        use Kind::*;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | Datasec | Enum64 => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
        }
    }
}

/// What can go wrong reading BTF. Cloneable so that a failed lookup can be kept and
/// reported by the feature that needs it, later.
#[derive(Clone, Debug, Error)]
pub enum BtfError {
    #[error("{source}")]
    Read {
        path: String,
        source: Arc<std::io::Error>,
    },
    #[error("not BTF data (bad magic {0:#06x})")]
    BadMagic(u16),
    #[error("BTF data is truncated or corrupt: {0}")]
    Corrupt(&'static str),
    #[error("BTF has no {0}")]
    Missing(String),
    /// A type of a kind this reader does not know stopped the walk (see [`Unread`]), and
    /// `what` was not among the types before it.
    #[error(
        "BTF has type kind {} at type id {}, which netdrop does not know, so the types after \
         it could not be read and {what} was not among those before it",
        unread.kind, unread.id
    )]
    UnknownKind {
        /// The looked-up type or member.
        what: String,
        /// Where the walk stopped.
        unread: Unread,
    },
    /// Split BTF whose base was cut short: its type ids cannot be placed.
    #[error(
        "the base BTF has type kind {} at type id {}, which netdrop does not know, so the \
         ids of split BTF on top of it are unknown",
        .0.kind, .0.id
    )]
    BaseUnread(Unread),
}

/// Where parsing stopped at a type of an unknown kind. Every kind carries data of its own
/// length after the common header, so nothing after such a type can be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unread {
    /// The raw `BTF_KIND_*` number.
    pub kind: u32,
    /// Type id of the first type not read.
    pub id: u32,
}

/// One parsed BTF blob (the kernel's, or a module's on top of it).
pub struct Btf {
    data: Vec<u8>,
    le: bool,
    str_start: usize,
    str_len: usize,
    /// Byte position of each type's header in `data`, indexed by `id - first_id`.
    types: Vec<usize>,
    first_id: u32,
    base: Option<Arc<Btf>>,
    /// Set when a type of an unknown kind ended the walk early.
    unread: Option<Unread>,
}

/// A type header.
#[derive(Clone, Copy)]
pub struct TypeRef<'a> {
    btf: &'a Btf,
    pos: usize,
    /// Kind of the type.
    pub kind: Kind,
    /// `vlen`: number of members, enumerators or parameters.
    pub vlen: usize,
    /// `kind_flag`.
    pub kind_flag: bool,
    name_off: u32,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
}

/// A struct or union member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Offset in bytes from the start of the outermost struct.
    pub offset: u32,
    /// Type id of the member.
    pub type_id: u32,
}

impl Btf {
    /// Reads a stand-alone BTF file, such as `/sys/kernel/btf/vmlinux`.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source: Arc::new(source),
        })?;
        Self::parse(data, None)
    }

    /// Reads split BTF (a module's) on top of `base`.
    pub fn from_split_file(path: &Path, base: Arc<Btf>) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source: Arc::new(source),
        })?;
        Self::parse(data, Some(base))
    }

    /// Parses BTF bytes; `base` is the BTF that split BTF extends. A type of a kind this
    /// reader does not know ends the walk without an error: the types before it stay
    /// readable, and looking up any other says why it is missing (see [`Btf::unread`]).
    pub fn parse(data: Vec<u8>, base: Option<Arc<Btf>>) -> Result<Self, BtfError> {
        if let Some(unread) = base.as_ref().and_then(|b| b.unread) {
            return Err(BtfError::BaseUnread(unread));
        }
        if data.len() < 2 {
            return Err(BtfError::Corrupt("header"));
        }
        let magic = [data[0], data[1]];
        let le = if u16::from_le_bytes(magic) == MAGIC {
            true
        } else if u16::from_be_bytes(magic) == MAGIC {
            false
        } else {
            return Err(BtfError::BadMagic(u16::from_le_bytes(magic)));
        };
        if data.len() < 24 {
            return Err(BtfError::Corrupt("header"));
        }
        let rd = |at: usize| read_u32(&data, at, le);
        let hdr_len = rd(4) as usize;
        let (type_off, type_len) = (rd(8) as usize, rd(12) as usize);
        let (str_off, str_len) = (rd(16) as usize, rd(20) as usize);
        let type_start = hdr_len + type_off;
        let str_start = hdr_len + str_off;
        if type_start + type_len > data.len() || str_start + str_len > data.len() {
            return Err(BtfError::Corrupt("section bounds"));
        }
        let first_id = base.as_ref().map_or(1, |b| b.next_id());
        let mut types = Vec::new();
        let mut unread = None;
        let mut pos = type_start;
        while pos < type_start + type_len {
            if pos + 12 > type_start + type_len {
                return Err(BtfError::Corrupt("type header"));
            }
            let info = rd(pos + 4);
            let raw_kind = (info >> 24) & 0x1f;
            let Some(kind) = Kind::from_raw(raw_kind) else {
                unread = Some(Unread {
                    kind: raw_kind,
                    id: first_id + types.len() as u32,
                });
                break;
            };
            types.push(pos);
            pos += 12 + kind.extra_len((info & 0xffff) as usize);
        }
        if unread.is_none() && pos != type_start + type_len {
            return Err(BtfError::Corrupt("type section length"));
        }
        if let Some(u) = unread {
            tracing::warn!(
                "BTF type {} has kind {}, which netdrop does not know: types from there on are \
                 not read, and features that need one of them say so",
                u.id,
                u.kind
            );
        }
        Ok(Self {
            data,
            le,
            str_start,
            str_len,
            types,
            first_id,
            base,
            unread,
        })
    }

    /// The BTF bytes as read, for readers of their own (aya's loader).
    pub fn raw(&self) -> &[u8] {
        &self.data
    }

    /// Where parsing stopped early at a type of an unknown kind, if it did.
    pub fn unread(&self) -> Option<Unread> {
        self.unread
    }

    /// The error for `what` not being found: plain [`BtfError::Missing`] when every type
    /// was read, else one that names the unknown kind that hid the rest.
    pub fn missing(&self, what: String) -> BtfError {
        match self.unread {
            Some(unread) => BtfError::UnknownKind { what, unread },
            None => BtfError::Missing(what),
        }
    }

    fn next_id(&self) -> u32 {
        self.first_id + self.types.len() as u32
    }

    fn u32_at(&self, at: usize) -> u32 {
        read_u32(&self.data, at, self.le)
    }

    /// The string at `off` in the string section (the base's for split BTF).
    pub fn str_at(&self, off: u32) -> &str {
        let off = off as usize;
        if let Some(base) = &self.base {
            if off < base.str_len {
                return base.str_at(off as u32);
            }
            return self.local_str(off - base.str_len);
        }
        self.local_str(off)
    }

    fn local_str(&self, off: usize) -> &str {
        let start = self.str_start + off;
        let end = self.str_start + self.str_len;
        if start >= end {
            return "";
        }
        let bytes = &self.data[start..end];
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..len]).unwrap_or("")
    }

    /// The type with id `id`, from this BTF or its base.
    pub fn type_by_id(&self, id: u32) -> Option<TypeRef<'_>> {
        if id < self.first_id {
            return self.base.as_ref()?.type_by_id(id);
        }
        let pos = *self.types.get((id - self.first_id) as usize)?;
        let info = self.u32_at(pos + 4);
        Some(TypeRef {
            btf: self,
            pos,
            kind: Kind::from_raw((info >> 24) & 0x1f)?,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            name_off: self.u32_at(pos),
            size_or_type: self.u32_at(pos + 8),
        })
    }

    /// Types defined in this blob (not its base), with their ids.
    pub fn local_types(&self) -> impl Iterator<Item = (u32, TypeRef<'_>)> {
        (0..self.types.len() as u32).filter_map(move |i| {
            let id = self.first_id + i;
            self.type_by_id(id).map(|t| (id, t))
        })
    }

    /// First type named `name` of one of `kinds`, searching this blob then its base.
    pub fn find(&self, name: &str, kinds: &[Kind]) -> Option<(u32, TypeRef<'_>)> {
        self.local_types()
            .find(|(_, t)| kinds.contains(&t.kind) && t.name() == name)
            .or_else(|| self.base.as_ref()?.find(name, kinds))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    pub fn resolve(&self, mut id: u32) -> Option<(u32, TypeRef<'_>)> {
        for _ in 0..32 {
            let t = self.type_by_id(id)?;
            match t.kind {
                Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag => {
                    id = t.size_or_type;
                }
                _ => return Some((id, t)),
            }
        }
        None
    }

    /// Offset of `path` (dot-separated, e.g. `"__sk_common.skc_net.net"`) in struct
    /// `name`, looking through anonymous structs and unions as C does.
    pub fn member(&self, name: &str, path: &str) -> Result<Member, BtfError> {
        let missing = || self.missing(format!("member {name}.{path}"));
        let (mut id, _) = self
            .find(name, &[Kind::Struct, Kind::Union])
            .ok_or_else(|| self.missing(format!("struct {name}")))?;
        let mut offset = 0;
        for part in path.split('.') {
            let (_, t) = self.resolve(id).ok_or_else(missing)?;
            let m = self.find_member(t, part).ok_or_else(missing)?;
            offset += m.offset;
            id = m.type_id;
        }
        Ok(Member {
            offset,
            type_id: id,
        })
    }

    fn find_member(&self, t: TypeRef<'_>, name: &str) -> Option<Member> {
        self.find_member_within(t, name, MAX_ANONYMOUS_NESTING)
    }

    fn find_member_within(&self, t: TypeRef<'_>, name: &str, depth: u32) -> Option<Member> {
        // Corrupt BTF may make an anonymous member contain itself.
        if depth == 0 || !matches!(t.kind, Kind::Struct | Kind::Union) {
            return None;
        }
        // `t` may live in the base blob: read its members there. Type ids are global, so
        // they resolve through `self`.
        let b = t.btf;
        for i in 0..t.vlen {
            let at = t.pos + 12 + i * 12;
            let (name_off, type_id, raw) = (b.u32_at(at), b.u32_at(at + 4), b.u32_at(at + 8));
            let bit_offset = if t.kind_flag { raw & 0x00ff_ffff } else { raw };
            let here = bit_offset / 8;
            let member_name = b.str_at(name_off);
            if member_name == name {
                return Some(Member {
                    offset: here,
                    type_id,
                });
            }
            if member_name.is_empty()
                && let Some((_, inner)) = self.resolve(type_id)
                && let Some(m) = self.find_member_within(inner, name, depth - 1)
            {
                return Some(Member {
                    offset: here + m.offset,
                    type_id: m.type_id,
                });
            }
        }
        None
    }

    /// Size in bytes of type `id`, following typedefs.
    pub fn size_of(&self, id: u32) -> Option<u32> {
        let (_, t) = self.resolve(id)?;
        match t.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(t.size_or_type)
            }
            Kind::Ptr => Some(8),
            _ => None,
        }
    }

    /// Enumerators of the enum called `name` (ENUM or ENUM64), in declaration order.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(String, i64)>> {
        let (_, t) = self.find(name, &[Kind::Enum, Kind::Enum64])?;
        Some(t.enumerators())
    }

    /// Number of parameters of the function prototype that typedef `name` points to
    /// (e.g. `btf_trace_kfree_skb`, whose first parameter is the tracepoint's `void *`).
    pub fn typedef_proto_params(&self, name: &str) -> Result<usize, BtfError> {
        let missing = || self.missing(format!("function prototype behind typedef {name}"));
        let (_, td) = self
            .find(name, &[Kind::Typedef])
            .ok_or_else(|| self.missing(format!("typedef {name}")))?;
        let (_, ptr) = self.resolve(td.size_or_type).ok_or_else(missing)?;
        let (_, proto) = match ptr.kind {
            Kind::Ptr => self.resolve(ptr.size_or_type).ok_or_else(missing)?,
            _ => (0, ptr),
        };
        match proto.kind {
            Kind::FuncProto => Ok(proto.vlen),
            _ => Err(missing()),
        }
    }
}

impl<'a> TypeRef<'a> {
    /// The type's name ("" for anonymous types).
    pub fn name(&self) -> &'a str {
        self.btf.str_at(self.name_off)
    }

    /// Enumerators of an ENUM or ENUM64 type; empty for other kinds.
    pub fn enumerators(&self) -> Vec<(String, i64)> {
        let b = self.btf;
        (0..self.vlen)
            .filter_map(|i| match self.kind {
                Kind::Enum => {
                    let at = self.pos + 12 + i * 8;
                    let raw = b.u32_at(at + 4);
                    // kind_flag marks a signed enum; otherwise values are unsigned.
                    let v = if self.kind_flag {
                        raw as i32 as i64
                    } else {
                        raw as i64
                    };
                    Some((b.str_at(b.u32_at(at)).to_owned(), v))
                }
                Kind::Enum64 => {
                    let at = self.pos + 12 + i * 12;
                    let v = (b.u32_at(at + 8) as u64) << 32 | b.u32_at(at + 4) as u64;
                    Some((b.str_at(b.u32_at(at)).to_owned(), v as i64))
                }
                _ => None,
            })
            .collect()
    }
}

/// Anonymous structs and unions looked through when finding a member; C code nests a few.
const MAX_ANONYMOUS_NESTING: u32 = 16;

fn read_u32(data: &[u8], at: usize, le: bool) -> u32 {
    let b = [data[at], data[at + 1], data[at + 2], data[at + 3]];
    if le {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    }
}

/// Builds small BTF blobs for tests, so that fixtures are readable code.
#[cfg(test)]
pub mod builder {
    use super::{Btf, Kind, MAGIC};

    /// Accumulates types and strings; ids start at 1 in order of addition.
    #[derive(Default)]
    pub struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        str_base: u32,
    }

    impl BtfBuilder {
        pub fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
                str_base: 0,
            }
        }

        /// A split blob on top of a base with `base_types` types and `base_str_len` bytes
        /// of strings: string offsets continue the base's.
        pub fn split(base_types: u32, base_str_len: u32) -> Self {
            Self {
                types: Vec::new(),
                strings: Vec::new(),
                next_id: base_types + 1,
                str_base: base_str_len,
            }
        }

        /// A split blob on top of `base`.
        pub fn split_on(base: &Btf) -> Self {
            Self::split(base.next_id() - 1, base.str_len as u32)
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.str_base + self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn header(&mut self, name: &str, kind: Kind, vlen: usize, flag: bool, x: u32) -> u32 {
            let name_off = self.string(name);
            let info = (kind as u32) << 24 | vlen as u32 | (flag as u32) << 31;
            for v in [name_off, info, x] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.header(name, Kind::Int, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.header("", Kind::Ptr, 0, false, to)
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.header(name, Kind::Typedef, 0, false, to)
        }

        pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
            let id = self.header("", Kind::Array, 0, false, 0);
            for v in [elem, index, n] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            id
        }

        /// `members`: (name, type id, byte offset).
        pub fn composite(
            &mut self,
            kind: Kind,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.header(name, kind, members.len(), false, size);
            for &(n, t, off) in members {
                let n = self.string(n);
                for v in [n, t, off * 8] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }

        pub fn enumeration(&mut self, name: &str, values: &[(&str, u32)]) -> u32 {
            let id = self.header(name, Kind::Enum, values.len(), false, 4);
            for &(n, v) in values {
                let n = self.string(n);
                self.types.extend_from_slice(&n.to_le_bytes());
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            id
        }

        pub fn func_proto(&mut self, params: &[u32]) -> u32 {
            let id = self.header("", Kind::FuncProto, params.len(), false, 0);
            for &p in params {
                self.types.extend_from_slice(&0u32.to_le_bytes());
                self.types.extend_from_slice(&p.to_le_bytes());
            }
            id
        }

        /// A type of raw kind `kind` (one this reader may not know) followed by `extra`
        /// bytes of kind-specific data.
        pub fn raw(&mut self, name: &str, kind: u32, vlen: usize, extra: &[u8]) -> u32 {
            let name_off = self.string(name);
            let info = kind << 24 | vlen as u32;
            for v in [name_off, info, 0] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            self.types.extend_from_slice(extra);
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        pub fn build(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let type_len = self.types.len() as u32;
            for v in [24u32, 0, type_len, type_len, self.strings.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{builder::BtfBuilder, *};

    fn sample() -> Btf {
        let mut b = BtfBuilder::new();
        let u32_t = b.int("unsigned int", 4);
        let u16_t = b.int("short unsigned int", 2);
        let net = b.composite(Kind::Struct, "net", 8, &[]);
        let net_ptr = b.ptr(net);
        let possible = b.composite(Kind::Struct, "", 8, &[("net", net_ptr, 0)]);
        let possible_t = b.typedef("possible_net_t", possible);
        let inner = b.composite(
            Kind::Struct,
            "",
            8,
            &[("protocol", u16_t, 2), ("network_header", u16_t, 6)],
        );
        let headers = b.composite(Kind::Union, "", 8, &[("", inner, 0)]);
        b.composite(
            Kind::Struct,
            "sk_buff",
            64,
            &[
                ("len", u32_t, 4),
                ("", headers, 16),
                ("net", possible_t, 32),
            ],
        );
        b.enumeration(
            "skb_drop_reason",
            &[("SKB_NOT_DROPPED_YET", 0), ("SKB_DROP_REASON_NO_SOCKET", 3)],
        );
        let skb_ptr = b.ptr(1);
        let proto = b.func_proto(&[skb_ptr, skb_ptr, u32_t]);
        let proto_ptr = b.ptr(proto);
        b.typedef("btf_trace_kfree_skb", proto_ptr);
        Btf::parse(b.build(), None).unwrap()
    }

    #[test]
    fn member_offsets_look_through_anonymous_unions_and_typedefs() {
        let btf = sample();
        assert_eq!(btf.member("sk_buff", "len").unwrap().offset, 4);
        assert_eq!(btf.member("sk_buff", "protocol").unwrap().offset, 18);
        assert_eq!(btf.member("sk_buff", "network_header").unwrap().offset, 22);
        assert_eq!(btf.member("sk_buff", "net.net").unwrap().offset, 32);
        let len = btf.member("sk_buff", "len").unwrap();
        assert_eq!(btf.size_of(len.type_id), Some(4));
    }

    #[test]
    fn missing_members_and_structs_are_errors() {
        let btf = sample();
        assert!(
            matches!(btf.member("sk_buff", "nope"), Err(BtfError::Missing(m)) if m == "member sk_buff.nope")
        );
        assert!(
            matches!(btf.member("nope", "len"), Err(BtfError::Missing(m)) if m == "struct nope")
        );
    }

    #[test]
    fn enums_and_prototypes() {
        let btf = sample();
        assert_eq!(
            btf.enum_values("skb_drop_reason").unwrap(),
            vec![
                ("SKB_NOT_DROPPED_YET".to_owned(), 0),
                ("SKB_DROP_REASON_NO_SOCKET".to_owned(), 3)
            ]
        );
        assert_eq!(btf.typedef_proto_params("btf_trace_kfree_skb").unwrap(), 3);
        assert!(matches!(
            btf.typedef_proto_params("nope"),
            Err(BtfError::Missing(m)) if m == "typedef nope"
        ));
    }

    #[test]
    fn split_btf_continues_ids_and_strings() {
        let base = Arc::new(sample());
        let base_types = base.types.len() as u32;
        let mut m = BtfBuilder::split_on(&base);
        m.enumeration("ovs_drop_reason", &[("OVS_DROP_FLOW", 0x20001)]);
        let split = Btf::parse(m.build(), Some(base.clone())).unwrap();
        let (id, t) = split.find("ovs_drop_reason", &[Kind::Enum]).unwrap();
        assert_eq!(id, base_types + 1);
        assert_eq!(t.enumerators(), vec![("OVS_DROP_FLOW".to_owned(), 0x20001)]);
        // Base types stay reachable through the split blob.
        assert_eq!(split.member("sk_buff", "len").unwrap().offset, 4);
    }

    #[test]
    fn an_anonymous_member_containing_itself_is_missing_not_a_crash() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        // Type 2 is a struct whose anonymous member is type 2 again.
        let looped = b.composite(Kind::Struct, "looped", 8, &[("", 2, 0), ("x", int, 4)]);
        assert_eq!(looped, 2);
        let btf = Btf::parse(b.build(), None).unwrap();
        assert_eq!(btf.member("looped", "x").unwrap().offset, 4);
        assert!(matches!(
            btf.member("looped", "y"),
            Err(BtfError::Missing(_))
        ));
    }

    /// A known struct, a type of kind 31 (with data of a length only its kind would tell),
    /// then more types.
    fn with_unknown_kind() -> Btf {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        b.composite(Kind::Struct, "before", 8, &[("x", int, 4)]);
        let unknown = b.raw("mystery", 31, 2, &[0xff; 20]);
        assert_eq!(unknown, 3);
        b.composite(Kind::Struct, "after", 8, &[("y", int, 0)]);
        Btf::parse(b.build(), None).unwrap()
    }

    #[test]
    fn an_unknown_kind_keeps_the_types_before_it_and_names_itself_for_the_rest() {
        let btf = with_unknown_kind();
        assert_eq!(btf.unread(), Some(Unread { kind: 31, id: 3 }));
        assert_eq!(btf.member("before", "x").unwrap().offset, 4);
        let err = btf.member("after", "y").unwrap_err();
        assert!(
            matches!(&err, BtfError::UnknownKind { what, unread: Unread { kind: 31, id: 3 } } if what == "struct after"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "BTF has type kind 31 at type id 3, which netdrop does not know, so the types after \
             it could not be read and struct after was not among those before it"
        );
        // A member missing from a type that was read is still missing for that reason.
        assert!(matches!(
            btf.member("before", "z"),
            Err(BtfError::UnknownKind { what, .. }) if what == "member before.z"
        ));
        assert!(btf.type_by_id(3).is_none());
    }

    #[test]
    fn split_btf_on_a_base_cut_short_is_refused() {
        let base = Arc::new(with_unknown_kind());
        let mut m = BtfBuilder::split(3, base.str_len as u32);
        m.int("long", 8);
        assert!(matches!(
            Btf::parse(m.build(), Some(base)),
            Err(BtfError::BaseUnread(Unread { kind: 31, id: 3 }))
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            Btf::parse(vec![0x9f, 0xeb, 1, 0], None),
            Err(BtfError::Corrupt(_))
        ));
        assert!(matches!(
            Btf::parse(b"vm\n".to_vec(), None),
            Err(BtfError::BadMagic(_))
        ));
        assert!(matches!(
            Btf::parse(vec![1; 32], None),
            Err(BtfError::BadMagic(_))
        ));
    }
}
