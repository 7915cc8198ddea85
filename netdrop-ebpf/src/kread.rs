//! Reads of kernel memory at offsets that user space found in BTF.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use netdrop_common::OFFSET_NONE;

/// Why a read did not happen.
#[derive(Clone, Copy)]
pub enum ReadError {
    /// This kernel has no such member, or the base pointer is NULL.
    Absent,
    /// bpf_probe_read_kernel failed with this error.
    Fault(i32),
}

/// Reads a `T` at `base + offset`.
#[inline(always)]
pub fn at<T>(base: *const u8, offset: u32) -> Result<T, ReadError> {
    if base.is_null() || offset == OFFSET_NONE {
        return Err(ReadError::Absent);
    }
    // SAFETY: bpf_probe_read_kernel copes with any address; a bad one is an error.
    unsafe { bpf_probe_read_kernel(base.add(offset as usize).cast::<T>()) }
        .map_err(ReadError::Fault)
}

/// Reads a pointer at `base + offset`; a NULL pointer counts as absent.
#[inline(always)]
pub fn ptr_at(base: *const u8, offset: u32) -> Result<*const u8, ReadError> {
    let p: *const u8 = at(base, offset)?;
    if p.is_null() {
        Err(ReadError::Absent)
    } else {
        Ok(p)
    }
}

/// Fills `dst` from `base + offset`.
#[inline(always)]
pub fn buf_at(base: *const u8, offset: u32, dst: &mut [u8]) -> Result<(), ReadError> {
    if base.is_null() || offset == OFFSET_NONE {
        return Err(ReadError::Absent);
    }
    // SAFETY: as in `at`.
    unsafe { bpf_probe_read_kernel_buf(base.add(offset as usize), dst) }.map_err(ReadError::Fault)
}
