//! Struct member offsets the eBPF programs need, read from the running kernel's BTF.

use netdrop_common::{KernelOffsets, OFFSET_NONE};

use super::btf::{Btf, BtfError};

/// Reads every offset in [`KernelOffsets`]. Members this kernel lacks become
/// [`OFFSET_NONE`] (the programs then skip what depends on them); a missing `sk_buff` or
/// `net_device` is an error, since nothing useful could be read.
pub fn from_btf(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let required = |s: &str, p: &str| btf.member(s, p).map(|m| m.offset);
    let optional = |s: &str, p: &str| match btf.member(s, p) {
        Ok(m) => m.offset,
        Err(e) => {
            tracing::debug!("{e}: the programs will not read it");
            OFFSET_NONE
        }
    };
    // `tail` is an offset from `head` on 64-bit kernels (NET_SKBUFF_DATA_USES_OFFSET) and a
    // pointer elsewhere; only the former is supported.
    let tail = btf.member("sk_buff", "tail")?;
    let skb_tail = match btf.size_of(tail.type_id) {
        Some(4) => tail.offset,
        _ => OFFSET_NONE,
    };
    // `int` up to 5.x, `u8` since: the programs read it at its own size.
    let (net_syncookies, net_syncookies_size) =
        match btf.member("net", "ipv4.sysctl_tcp_syncookies") {
            Ok(m) => match btf.size_of(m.type_id) {
                Some(size @ (1 | 4)) => (m.offset, size),
                _ => (OFFSET_NONE, 0),
            },
            Err(e) => {
                tracing::debug!("{e}: the programs will not read it");
                (OFFSET_NONE, 0)
            }
        };
    Ok(KernelOffsets {
        skb_dev: required("sk_buff", "dev")?,
        skb_sk: required("sk_buff", "sk")?,
        skb_len: required("sk_buff", "len")?,
        skb_head: required("sk_buff", "head")?,
        skb_tail,
        skb_protocol: required("sk_buff", "protocol")?,
        skb_network_header: required("sk_buff", "network_header")?,
        skb_mac_header: required("sk_buff", "mac_header")?,
        dev_name: required("net_device", "name")?,
        dev_ifindex: required("net_device", "ifindex")?,
        dev_net: optional("net_device", "nd_net.net"),
        sk_net: optional("sock", "__sk_common.skc_net.net"),
        net_inum: optional("net", "ns.inum"),
        sk_ack_backlog: optional("sock", "sk_ack_backlog"),
        sk_max_ack_backlog: optional("sock", "sk_max_ack_backlog"),
        icsk_syn_qlen: optional("inet_connection_sock", "icsk_accept_queue.qlen"),
        net_syncookies,
        net_syncookies_size,
        skb_cb: optional("sk_buff", "cb"),
        _pad: 0,
    })
}

/// `softnet_data.input_pkt_queue.qlen`: the length of a CPU's netdev backlog (the same
/// member on 5.10, 6.1 and 6.12), or [`OFFSET_NONE`].
pub fn softnet_qlen(btf: &Btf) -> u32 {
    match btf.member("softnet_data", "input_pkt_queue.qlen") {
        Ok(m) => m.offset,
        Err(e) => {
            tracing::debug!("{e}: backlog events will not name the queue length");
            OFFSET_NONE
        }
    }
}

/// `net_hotdata.max_backlog`: where `net.core.netdev_max_backlog` lives from 6.9 (a
/// global `netdev_max_backlog` before), or [`OFFSET_NONE`].
pub fn hotdata_max_backlog(btf: &Btf) -> u32 {
    btf.member("net_hotdata", "max_backlog")
        .map_or(OFFSET_NONE, |m| m.offset)
}

/// The arguments `kfree_skb` passes to BTF tracepoint programs on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookArity {
    /// `(skb, location)`: up to 5.16.
    Two,
    /// `(skb, location, reason)`: 5.17 to 6.10.
    Three,
    /// `(skb, location, reason, rx_sk)`: 6.11+.
    Four,
}

/// Reads the arity from the `btf_trace_kfree_skb` prototype (whose first parameter is the
/// tracepoint's private `void *`); an error when BTF does not describe that tracepoint (or
/// could not be read as far as it).
pub fn kfree_skb_arity(btf: &Btf) -> Result<HookArity, BtfError> {
    match btf.typedef_proto_params("btf_trace_kfree_skb")? {
        3 => Ok(HookArity::Two),
        4 => Ok(HookArity::Three),
        n if n >= 5 => Ok(HookArity::Four),
        n => Err(BtfError::Missing(format!(
            "kfree_skb tracepoint prototype netdrop knows (btf_trace_kfree_skb has {n} parameters)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::{Kind, builder::BtfBuilder};

    /// A kernel-shaped BTF: `sk_buff` with its header offsets inside an anonymous union,
    /// `net_device`, `sock` with `__sk_common`, `net` with `ns.inum`.
    pub(crate) fn kernel_btf(with_netns: bool, proto_params: usize) -> Btf {
        let mut b = BtfBuilder::new();
        let u8_t = b.int("unsigned char", 1);
        let u16_t = b.int("__u16", 2);
        let u32_t = b.int("unsigned int", 4);
        let int_t = b.int("int", 4);
        let data_t = b.typedef("sk_buff_data_t", u32_t);
        let uchar_ptr = b.ptr(u8_t);
        let ns_common = b.composite(Kind::Struct, "ns_common", 24, &[("inum", u32_t, 16)]);
        let net = b.composite(Kind::Struct, "net", 256, &[("ns", ns_common, 120)]);
        let net_ptr = b.ptr(net);
        let possible = b.composite(Kind::Struct, "", 8, &[("net", net_ptr, 0)]);
        let possible_t = b.typedef("possible_net_t", possible);
        let idx = b.int("__ARRAY_SIZE_TYPE__", 4);
        let name_t = b.array(u8_t, idx, 16);
        let mut dev_members = vec![("name", name_t, 0), ("ifindex", int_t, 224)];
        if with_netns {
            dev_members.push(("nd_net", possible_t, 280));
        }
        let dev = b.composite(Kind::Struct, "net_device", 2048, &dev_members);
        let dev_ptr = b.ptr(dev);
        let common = b.composite(
            Kind::Struct,
            "sock_common",
            136,
            &[("skc_net", possible_t, 48)],
        );
        let sock = b.composite(Kind::Struct, "sock", 800, &[("__sk_common", common, 0)]);
        let sock_ptr = b.ptr(sock);
        let hdrs = b.composite(
            Kind::Struct,
            "",
            8,
            &[
                ("protocol", u16_t, 0),
                ("transport_header", u16_t, 2),
                ("network_header", u16_t, 4),
                ("mac_header", u16_t, 6),
            ],
        );
        let grp = b.composite(Kind::Union, "", 8, &[("", hdrs, 0)]);
        let dev_union_inner = b.composite(Kind::Struct, "", 24, &[("dev", dev_ptr, 16)]);
        let dev_union = b.composite(Kind::Union, "", 24, &[("", dev_union_inner, 0)]);
        let skb = b.composite(
            Kind::Struct,
            "sk_buff",
            232,
            &[
                ("", dev_union, 0),
                ("sk", sock_ptr, 24),
                ("len", u32_t, 112),
                ("", grp, 180),
                ("tail", data_t, 188),
                ("end", data_t, 192),
                ("head", uchar_ptr, 200),
            ],
        );
        let skb_ptr = b.ptr(skb);
        let void_ptr = b.ptr(0);
        let params: Vec<u32> =
            [void_ptr, skb_ptr, void_ptr, u32_t, sock_ptr][..proto_params].to_vec();
        let proto = b.func_proto(&params);
        let proto_ptr = b.ptr(proto);
        b.typedef("btf_trace_kfree_skb", proto_ptr);
        Btf::parse(b.build(), None).unwrap()
    }

    #[test]
    fn reads_offsets_through_anonymous_members() {
        let off = from_btf(&kernel_btf(true, 5)).unwrap();
        assert_eq!(off.skb_dev, 16);
        assert_eq!(off.skb_sk, 24);
        assert_eq!(off.skb_len, 112);
        assert_eq!(off.skb_protocol, 180);
        assert_eq!(off.skb_network_header, 184);
        assert_eq!(off.skb_mac_header, 186);
        assert_eq!(off.skb_tail, 188);
        assert_eq!(off.skb_head, 200);
        assert_eq!(off.dev_name, 0);
        assert_eq!(off.dev_ifindex, 224);
        assert_eq!(off.dev_net, 280);
        assert_eq!(off.sk_net, 48);
        assert_eq!(off.net_inum, 136);
    }

    #[test]
    fn kernels_without_netns_leave_the_device_netns_unread() {
        let off = from_btf(&kernel_btf(false, 5)).unwrap();
        assert_eq!(off.dev_net, OFFSET_NONE);
        assert_eq!(off.sk_net, 48);
    }

    #[test]
    fn arity_follows_the_tracepoint_prototype() {
        assert_eq!(
            kfree_skb_arity(&kernel_btf(true, 3)).unwrap(),
            HookArity::Two
        );
        assert_eq!(
            kfree_skb_arity(&kernel_btf(true, 4)).unwrap(),
            HookArity::Three
        );
        assert_eq!(
            kfree_skb_arity(&kernel_btf(true, 5)).unwrap(),
            HookArity::Four
        );
    }
}
