//! `cargo xtask kernel-btf`: netdrop's BTF reading checked on real kernels. Extracts the
//! vmlinux BTF of every Debian kernel the VM tests use (from the cached packages, no boot),
//! then runs netdrop's ignored test `kernel::btf_oracle`, which compares offsets, the
//! `kfree_skb` prototype and the reason enums of those kernels and of this machine's
//! against `pahole`.
//!
//! A vmlinuz is a bzImage: a setup header giving where the compressed kernel lies, then
//! that payload (gzip, xz, zstd or LZ4 on Debian), which decompresses to the vmlinux ELF
//! whose `.BTF` section is what the kernel publishes as /sys/kernel/btf/vmlinux. The
//! extracted files (several MB each) stay in the cache under target/vm/btf.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use super::{fetch_kernel, kernel};
use crate::{cmd, setup};

/// Tools the extraction and the check run: (command, Debian package).
const TOOLS: &[(&str, &str)] = &[
    ("pahole", "dwarves"),
    ("objcopy", "binutils"),
    ("gzip", "gzip"),
    ("xz", "xz-utils"),
    ("zstd", "zstd"),
    ("lz4", "lz4"),
];

/// The BTF magic, little-endian.
const BTF_MAGIC: [u8; 2] = [0x9f, 0xeb];
/// Where the running kernel publishes its BTF.
const HOST_BTF: &str = "/sys/kernel/btf/vmlinux";

pub fn run() -> Result<()> {
    setup::toolchain()?;
    setup::install_packages(TOOLS)?;
    let vm_dir = cmd::target_dir().join("vm");
    let out_dir = vm_dir.join("btf");
    std::fs::create_dir_all(&out_dir)?;
    let mut files = Vec::new();
    for spec in kernel::KERNELS {
        let (k, _) = fetch_kernel(spec, &vm_dir)?;
        let btf = out_dir.join(format!("{}.btf", k.release));
        if !btf.is_file() {
            extract(&k.vmlinuz, &btf)
                .with_context(|| format!("extracting the BTF of {}", k.vmlinuz.display()))?;
        }
        eprintln!("xtask: {}: BTF {}", spec.name, btf.display());
        files.push((spec.name.to_owned(), btf));
    }
    if !Path::new(HOST_BTF).is_file() {
        bail!("this machine's kernel publishes no BTF at {HOST_BTF}");
    }
    files.push(("host".to_owned(), PathBuf::from(HOST_BTF)));
    let spec: Vec<String> = files
        .iter()
        .map(|(n, f)| format!("{n}={}", f.display()))
        .collect();
    let mut c = cmd::cargo();
    c.args([
        "test",
        "--package",
        "netdrop",
        "--",
        "--ignored",
        "--exact",
        "kernel::btf_oracle::offsets_prototype_and_reasons_match_pahole_on_real_kernels",
        "--nocapture",
    ])
    .env("NETDROP_KERNEL_BTF", spec.join(";"));
    cmd::run(&mut c)
}

/// Writes the `.BTF` section of the kernel inside bzImage `vmlinuz` to `out`.
pub fn extract(vmlinuz: &Path, out: &Path) -> Result<()> {
    let image = std::fs::read(vmlinuz)?;
    let (payload, size) = payload(&image)?;
    let tool = decompressor(payload)
        .with_context(|| format!("unknown compression (magic {:02x?})", &payload[..4]))?;
    let elf = out.with_extension("vmlinux.partial");
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&elf)?)
        .spawn()
        .with_context(|| format!("running {}", tool[0]))?;
    // Written from a thread: the decompressor writes while it reads.
    let input = payload.to_vec();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let status = child.wait()?;
    writer.join().expect("writer thread")?;
    if !status.success() {
        bail!("{} could not decompress the kernel ({status})", tool[0]);
    }
    let len = std::fs::metadata(&elf)?.len();
    if size.is_some_and(|s| u64::from(s) != len) {
        bail!(
            "{} gave {len} bytes where the image says {}",
            tool[0],
            size.unwrap_or(0)
        );
    }
    let partial = out.with_extension("btf.partial");
    let extracted = cmd::run(
        Command::new("objcopy")
            .args(["-O", "binary", "--only-section=.BTF"])
            .arg(&elf)
            .arg(&partial),
    );
    let _ = std::fs::remove_file(&elf);
    extracted?;
    let btf = std::fs::read(&partial)?;
    if btf.len() < 24 || btf[..2] != BTF_MAGIC {
        let _ = std::fs::remove_file(&partial);
        bail!("the kernel's .BTF section is missing or not BTF");
    }
    std::fs::rename(&partial, out)?;
    Ok(())
}

/// The compressed kernel inside a bzImage, and its decompressed size when the image
/// records it (the build appends it as 4 bytes to every format but gzip, whose own
/// trailer has it).
fn payload(image: &[u8]) -> Result<(&[u8], Option<u32>)> {
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage (no HdrS setup header)");
    }
    // Setup sectors, then the protected-mode part that holds the payload (0 means 4).
    let setup_sects = match image.get(0x1f1) {
        Some(0) | None => 4,
        Some(&n) => usize::from(n),
    };
    let (offset, len) = match (u32_at(0x248), u32_at(0x24c)) {
        (Some(o), Some(l)) => (o as usize, l as usize),
        _ => bail!("bzImage header too short for payload_offset/payload_length"),
    };
    let start = (setup_sects + 1) * 512 + offset;
    let payload = image
        .get(start..start + len)
        .context("payload_offset/payload_length point outside the image")?;
    if payload.starts_with(&[0x1f, 0x8b]) {
        return Ok((payload, None));
    }
    let Some(body) = payload.len().checked_sub(4) else {
        bail!("payload of {} bytes", payload.len());
    };
    Ok((&payload[..body], u32_at(start + body)))
}

/// The command that decompresses `payload` to stdout, by its magic.
fn decompressor(payload: &[u8]) -> Option<&'static [&'static str]> {
    let magic: &[(&[u8], &[&str])] = &[
        (&[0x1f, 0x8b], &["gzip", "-dc"]),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], &["xz", "-dc"]),
        (&[0x28, 0xb5, 0x2f, 0xfd], &["zstd", "-dc"]),
        // The kernel's LZ4 is the legacy frame format, which lz4 reads too.
        (&[0x02, 0x21, 0x4c, 0x18], &["lz4", "-dc"]),
    ];
    magic
        .iter()
        .find(|(m, _)| payload.starts_with(m))
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-shaped buffer: 2 setup sectors, then `payload` at offset 100 of the
    /// protected-mode part, with `size` appended when given.
    fn image(payload: &[u8], size: Option<u32>) -> Vec<u8> {
        let mut body = payload.to_vec();
        if let Some(s) = size {
            body.extend_from_slice(&s.to_le_bytes());
        }
        let start = 3 * 512 + 100;
        let mut img = vec![0u8; start];
        img[0x1f1] = 2;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(body.len() as u32).to_le_bytes());
        img.extend_from_slice(&body);
        img.extend_from_slice(&[0xee; 16]);
        img
    }

    #[test]
    fn the_payload_is_found_from_the_setup_header() {
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3];
        let img = image(&zstd, Some(4096));
        let (p, size) = payload(&img).unwrap();
        assert_eq!(p, zstd);
        assert_eq!(size, Some(4096));
        assert_eq!(decompressor(p), Some(&["zstd", "-dc"][..]));
        // gzip carries its size itself: nothing is cut.
        let gz = [0x1f, 0x8b, 8, 0, 9, 9];
        let img = image(&gz, None);
        assert_eq!(payload(&img).unwrap(), (&gz[..], None));
    }

    #[test]
    fn other_files_are_refused() {
        assert!(payload(&[0u8; 4096]).is_err());
        assert_eq!(decompressor(b"BZh91AY"), None);
    }
}
