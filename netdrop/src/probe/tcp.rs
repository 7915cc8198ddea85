//! The TCP listener hook (`netdrop-ebpf/src/tcp.rs`): kprobes on `tcp_conn_request` (SYNs
//! dropped at a full accept or SYN queue, which the kernel frees without kfree_skb) and on
//! `tcp_v4_syn_recv_sock` / `tcp_v6_syn_recv_sock` (handshake ACKs that find the accept
//! queue full). Needs CONFIG_KPROBES; elsewhere overflowing listeners are named from the
//! kernel counters and sock_diag (`kernel::sockdiag`).

use std::path::Path;

use aya::{Ebpf, programs::KProbe};
use netdrop_common::{program, tcp_functions};

use super::program_mut;
use crate::{error::Error, kernel::reasons::Reasons};

/// State of the TCP listener hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpListen {
    /// SYNs dropped at full queues are events; `acks` says whether handshake ACKs are too
    /// (not on kernels that name them TCP_LISTEN_OVERFLOW themselves).
    Attached { acks: bool },
    /// This kernel does not allow it; the reason.
    Unavailable(String),
}

/// Attaches the TCP listener probes if this kernel has kprobes.
pub fn attach(ebpf: &mut Ebpf, reasons: &Reasons) -> TcpListen {
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return TcpListen::Unavailable("this kernel has no kprobes (CONFIG_KPROBES)".to_owned());
    }
    let res = (|| -> Result<bool, Error> {
        attach_to(
            ebpf,
            program::TCP_CONN_REQUEST,
            &[tcp_functions::CONN_REQUEST],
        )?;
        // 6.15+ frees such ACKs as TCP_LISTEN_OVERFLOW: counted once, as the kernel's.
        let acks = reasons.lookup("TCP_LISTEN_OVERFLOW").is_err();
        if acks {
            attach_to(
                ebpf,
                program::TCP_SYN_RECV_SOCK,
                &tcp_functions::SYN_RECV_SOCK,
            )?;
        }
        Ok(acks)
    })();
    match res {
        Ok(acks) => TcpListen::Attached { acks },
        Err(e) => TcpListen::Unavailable(e.to_string()),
    }
}

fn attach_to(ebpf: &mut Ebpf, name: &'static str, functions: &[&str]) -> Result<(), Error> {
    let prog_err = |source| Error::Program {
        program: name,
        source,
    };
    let prog: &mut KProbe = program_mut(ebpf, name)?.try_into().map_err(prog_err)?;
    prog.load().map_err(prog_err)?;
    for f in functions {
        prog.attach(*f, 0).map_err(prog_err)?;
    }
    Ok(())
}
