//! Library target so that `netdrop` can name this crate as a build dependency; the
//! programs themselves are in the `netdrop` binary target (`src/main.rs`).
#![no_std]
