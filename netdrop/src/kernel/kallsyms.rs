//! Kernel address to `symbol+0xoff [module]`, from `/proc/kallsyms`.

use std::{
    collections::HashMap,
    io::BufRead,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// A resolved kernel address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Function name.
    pub name: String,
    /// Offset of the address from the start of the function.
    pub offset: u64,
    /// Module name, or `None` for the kernel image.
    pub module: Option<String>,
}

impl std::fmt::Display for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.name, self.offset)?;
        if let Some(m) = &self.module {
            write!(f, " [{m}]")?;
        }
        Ok(())
    }
}

/// Sorted text symbols.
#[derive(Debug, Default)]
pub struct Table {
    /// (address, name, module index), sorted by address.
    syms: Vec<(u64, Box<str>, Option<u16>)>,
    modules: Vec<String>,
    /// Sizes of JIT-ed BPF program images, by program tag. kallsyms gives a BPF program
    /// (`bpf_prog_<tag>_<name> [bpf]`) a start address only, and the JIT places programs
    /// above everything else when no module is loaded, so without its size the last program
    /// would own no address past its first byte.
    bpf_sizes: HashMap<u64, u64>,
}

/// Largest distance from a symbol still attributed to it; beyond is a gap.
const MAX_SYMBOL_SIZE: u64 = 1 << 20;

impl Table {
    /// Parses kallsyms text. Keeps text symbols only: drop locations are code addresses.
    pub fn parse(reader: impl BufRead) -> Self {
        let mut table = Self::default();
        let mut module_ids: HashMap<String, u16> = HashMap::new();
        for line in reader.lines().map_while(Result::ok) {
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            let module = parts
                .next()
                .and_then(|m| m.strip_prefix('[')?.strip_suffix(']'))
                .map(|m| {
                    let next = module_ids.len() as u16;
                    *module_ids.entry(m.to_owned()).or_insert_with(|| {
                        table.modules.push(m.to_owned());
                        next
                    })
                });
            table.syms.push((addr, name.into(), module));
        }
        table.syms.sort_by_key(|s| s.0);
        table
    }

    /// Adds the JIT-ed sizes of BPF programs, by program tag (see [`bpf_program_sizes`]).
    pub fn with_bpf_sizes(mut self, sizes: HashMap<u64, u64>) -> Self {
        self.bpf_sizes = sizes;
        self
    }

    /// The size of a symbol when the kernel tells it: only BPF programs, by their tag.
    fn known_size(&self, name: &str, module: Option<u16>) -> Option<u64> {
        if module.map(|m| self.modules[m as usize].as_str()) != Some("bpf") {
            return None;
        }
        let tag = name.strip_prefix("bpf_prog_")?.get(..16)?;
        let tag = u64::from_str_radix(tag, 16).ok()?;
        self.bpf_sizes.get(&tag).copied()
    }

    /// True when every address is zero: kptr_restrict hides them from this process.
    pub fn addresses_hidden(&self) -> bool {
        self.syms.iter().all(|s| s.0 == 0)
    }

    /// The code of the kernel-image function `name`: `[start, end)`, where the next symbol
    /// starts.
    pub fn range(&self, name: &str) -> Option<(u64, u64)> {
        let idx = self
            .syms
            .iter()
            .position(|(a, n, m)| m.is_none() && *a != 0 && &**n == name)?;
        let start = self.syms[idx].0;
        let end = self.syms[idx + 1..]
            .iter()
            .map(|s| s.0)
            .find(|&a| a > start)?;
        Some((start, end))
    }

    /// The symbol containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<Symbol> {
        let idx = self.syms.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        // Aliases share an address (`_stext`/`_text`): report the last one, the function name.
        let (start, name, module) = &self.syms[idx];
        let offset = addr - start;
        if *start == 0 {
            return None;
        }
        match self.known_size(name, *module) {
            Some(size) if offset >= size => return None,
            Some(_) => {}
            None => {
                let last = idx + 1 == self.syms.len();
                if offset >= MAX_SYMBOL_SIZE || last && offset > 0 {
                    return None;
                }
            }
        }
        Some(Symbol {
            name: name.to_string(),
            offset,
            module: module.map(|m| self.modules[m as usize].clone()),
        })
    }
}

/// Caching symboliser over `/proc/kallsyms`; reloads (at most every few seconds) when an
/// address is unknown, since modules load and unload while we run.
pub struct Symbolizer {
    path: PathBuf,
    table: Arc<Table>,
    loaded_at: Instant,
    cache: HashMap<u64, Option<Arc<Symbol>>>,
}

const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
const CACHE_LIMIT: usize = 1 << 16;

impl Symbolizer {
    /// Loads `path` (normally `/proc/kallsyms`).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let table = Self::read(path)?;
        Ok(Self {
            path: path.to_owned(),
            table: Arc::new(table),
            loaded_at: Instant::now(),
            cache: HashMap::new(),
        })
    }

    fn read(path: &Path) -> std::io::Result<Table> {
        let f = std::fs::File::open(path)?;
        Ok(Table::parse(std::io::BufReader::new(f)).with_bpf_sizes(bpf_program_sizes()))
    }

    /// True when kallsyms shows only zero addresses to us.
    pub fn addresses_hidden(&self) -> bool {
        self.table.addresses_hidden()
    }

    /// Resolves `addr`, from cache when possible.
    pub fn resolve(&mut self, addr: u64) -> Option<Arc<Symbol>> {
        if let Some(hit) = self.cache.get(&addr) {
            return hit.clone();
        }
        let mut sym = self.table.lookup(addr);
        if sym.is_none() && self.loaded_at.elapsed() >= RELOAD_INTERVAL {
            if let Ok(t) = Self::read(&self.path) {
                self.table = Arc::new(t);
                self.cache.clear();
            }
            self.loaded_at = Instant::now();
            sym = self.table.lookup(addr);
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        let sym = sym.map(Arc::new);
        self.cache.insert(addr, sym.clone());
        sym
    }
}

/// JIT-ed image sizes of the loaded BPF programs, by tag, from the kernel's program info.
/// Empty when the kernel refuses to list programs (no privileges): lookups then fall back to
/// the next symbol as the end of a program.
pub fn bpf_program_sizes() -> HashMap<u64, u64> {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.size_jitted() > 0)
        .map(|p| (p.tag(), u64::from(p.size_jitted())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn table() -> Table {
        Table::parse(testdata::read("kallsyms/6.1-with-veth").as_bytes())
    }

    #[test]
    fn kernel_symbols_with_offsets() {
        let t = table();
        let s = t.lookup(0xffffffffaa48bc60 + 0x5b1).unwrap();
        assert_eq!(s.to_string(), "__udp4_lib_rcv+0x5b1");
        let s = t.lookup(0xffffffffaa47bf30).unwrap();
        assert_eq!(s.to_string(), "tcp_v4_rcv+0x0");
    }

    #[test]
    fn function_ranges_end_where_the_next_symbol_starts() {
        let t = table();
        assert_eq!(
            t.range("nf_hook_slow"),
            Some((0xffffffffaa439ee0, 0xffffffffaa444040))
        );
        assert_eq!(
            t.range("veth_stats_rx"),
            None,
            "module symbols are not asked for"
        );
        assert_eq!(t.range("no_such_function"), None);
    }

    #[test]
    fn module_symbols_name_their_module() {
        let t = table();
        let s = t.lookup(0xffffffffc05011b0 + 0x10).unwrap();
        assert_eq!(s.name, "veth_stats_rx");
        assert_eq!(s.module.as_deref(), Some("veth"));
        assert_eq!(s.to_string(), "veth_stats_rx+0x10 [veth]");
    }

    #[test]
    fn data_symbols_are_ignored_and_gaps_are_unknown() {
        let t = table();
        // veth_rq_stats_desc is rodata, past the last text symbol (veth_validate), whose
        // size is unknown: not attributed to it.
        assert_eq!(t.lookup(0xffffffffc0505920), None);
        assert_eq!(t.lookup(0xffffffffc05012e0).unwrap().name, "veth_validate");
        // Between two text symbols, the lower one owns the address.
        assert_eq!(
            t.lookup(0xffffffffc05012b8).unwrap().to_string(),
            "veth_fix_features+0x8 [veth]"
        );
        assert_eq!(t.lookup(0x1000), None);
        // Far past the end of the kernel text and before the modules.
        assert_eq!(t.lookup(0xffffffffb0000000), None);
    }

    #[test]
    fn a_bpf_program_placed_last_is_bounded_by_its_jited_size() {
        let text = testdata::read("kallsyms/6.18-bpf-last");
        let prog = 0xffffffffc00010d0;
        // Without the program's size, the last symbol owns only its first byte.
        let t = Table::parse(text.as_bytes());
        assert_eq!(t.lookup(prog + 0x7e0), None);
        assert_eq!(
            t.lookup(prog).unwrap().to_string(),
            "bpf_prog_8f3d5c2ab1e4f607_drop_btf_4arg+0x0 [bpf]"
        );
        // With it, addresses inside the image resolve and the first byte past it does not.
        let sizes = HashMap::from([(0x8f3d5c2ab1e4f607, 0x900)]);
        let t = Table::parse(text.as_bytes()).with_bpf_sizes(sizes);
        assert_eq!(
            t.lookup(prog + 0x7e0).unwrap().to_string(),
            "bpf_prog_8f3d5c2ab1e4f607_drop_btf_4arg+0x7e0 [bpf]"
        );
        assert_eq!(t.lookup(prog + 0x900), None);
        // A program before the last one ends at its own size, not at the next program.
        let earlier = 0xffffffffc0000b40;
        let sizes = HashMap::from([(0x0123456789abcdef, 0x100)]);
        let t = Table::parse(text.as_bytes()).with_bpf_sizes(sizes);
        assert_eq!(t.lookup(earlier + 0xff).unwrap().offset, 0xff);
        assert_eq!(t.lookup(earlier + 0x100), None);
        // Kernel symbols are untouched.
        assert_eq!(
            t.lookup(0xffffffff81d2c1f0 + 0x4bc).unwrap().to_string(),
            "__udp4_lib_rcv+0x4bc"
        );
    }

    #[test]
    fn hidden_addresses_are_detected() {
        let t = Table::parse("0000000000000000 T _text\n0000000000000000 T foo\n".as_bytes());
        assert!(t.addresses_hidden());
        assert_eq!(t.lookup(0x10), None);
        assert!(!table().addresses_hidden());
    }
}
