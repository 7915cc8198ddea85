//! The receive side in `stats` and `top`: per-CPU softnet counters and per-device receive
//! counts with netdrop's drops per device, over the report's interval.
//!
//! Measured, not inferred: the softnet counters are the kernel's own
//! (`/proc/net/softnet_stat`, host-wide, every kernel); receive counts are the device's
//! (`/proc/net/dev` of each watched namespace, as the driver and the core count them; no
//! per-packet hook); `drops` are the drops netdrop counted in the kernel whose packet had
//! that device (`skb->dev`: received on it, or being sent through it), exact, and only
//! where the run counts per device (`--by dev`, `--by netns`, `top`).

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use serde::{Deserialize, Serialize};

use crate::{
    aggregate::Totals,
    event::{Enricher, Netns, c_str},
    kernel::counters::RxSnapshot,
    output::text,
};

/// What the softnet table measures, for text output.
pub const SOFTNET_SOURCE: &str = "per CPU, from /proc/net/softnet_stat";
/// What the device table measures, for text output.
pub const DEVICES_SOURCE: &str =
    "rx from /proc/net/dev; drops = netdrop's drops with that skb->dev; ratio = drops / rx packets";

/// One CPU's softnet counters over the interval, and since boot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftnetRow {
    pub cpu: u32,
    /// Packets this CPU processed on receive in the interval.
    pub processed: u64,
    /// Packets dropped in the interval because this CPU's backlog was full
    /// (net.core.netdev_max_backlog): CPU_BACKLOG.
    pub dropped: u64,
    /// Times in the interval receive processing ran out of budget with work left
    /// (net.core.netdev_budget, netdev_budget_usecs); not a drop by itself.
    pub time_squeeze: u64,
    /// `dropped` since boot.
    pub dropped_total: u64,
    /// `time_squeeze` since boot.
    pub time_squeeze_total: u64,
}

/// One device's receive counts and drops over the interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRxRow {
    /// Device name, as its namespace's /proc/net/dev lists it.
    pub device: String,
    pub netns: Netns,
    /// Packets the device received in the interval (`rx_packets`).
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// The device's own receive drops in the interval (`rx_dropped`: no buffer, full
    /// backlog, unknown protocol, ...).
    pub rx_dropped: u64,
    /// Receive ring overruns in the interval (`rx_fifo`).
    pub rx_fifo: u64,
    /// netdrop's drops of packets with this device in the interval; `null` when this run
    /// does not count per device (`stats --by dev` or `--by netns` does, `top` does).
    pub drops: Option<u64>,
    /// `drops / rx_packets`; `null` without per-device counts or without received
    /// packets. Drops of packets sent through the device count too, so it can pass 1.
    pub drop_ratio: Option<f64>,
}

/// The rows for the interval from `prev` to `now`. `by_device` says whether the totals
/// hold per-device drop counts. Devices that received nothing and dropped nothing in the
/// interval are left out; the rest come most drops first, then most received.
pub fn rows(
    enricher: &mut Enricher,
    prev: &RxSnapshot,
    now: &RxSnapshot,
    totals: (&Totals, &Totals),
    by_device: bool,
) -> (Vec<SoftnetRow>, Vec<DeviceRxRow>) {
    let softnet = now
        .softnet
        .iter()
        .map(|c| {
            let was = prev.softnet.iter().find(|p| p.cpu == c.cpu).unwrap_or(c);
            SoftnetRow {
                cpu: c.cpu,
                processed: c.processed.saturating_sub(was.processed),
                dropped: c.dropped.saturating_sub(was.dropped),
                time_squeeze: c.time_squeeze.saturating_sub(was.time_squeeze),
                dropped_total: c.dropped,
                time_squeeze_total: c.time_squeeze,
            }
        })
        .collect();
    let drops = by_device.then(|| device_drops(totals.0, totals.1));
    let mut devices: Vec<DeviceRxRow> = now
        .devices
        .iter()
        .filter_map(|(key, d)| {
            // A device first seen now (or re-created) starts its interval now.
            let was = prev
                .devices
                .get(key)
                .filter(|p| p.rx_packets <= d.rx_packets);
            let delta = |f: fn(&crate::kernel::counters::DevStats) -> u64| {
                was.map_or(0, |w| f(d).saturating_sub(f(w)))
            };
            let rx_packets = delta(|s| s.rx_packets);
            let dropped = drops
                .as_ref()
                .map(|m| m.get(&(key.0, key.1.clone())).copied().unwrap_or(0));
            let rx_dropped = delta(|s| s.rx_dropped);
            let rx_fifo = delta(|s| s.rx_fifo);
            if rx_packets == 0 && rx_dropped == 0 && rx_fifo == 0 && dropped.unwrap_or(0) == 0 {
                return None;
            }
            Some(DeviceRxRow {
                device: d.name.clone(),
                netns: enricher.netns(key.0, "procfs"),
                rx_packets,
                rx_bytes: delta(|s| s.rx_bytes),
                rx_dropped,
                rx_fifo,
                drops: dropped,
                drop_ratio: dropped
                    .filter(|_| rx_packets > 0)
                    .map(|n| n as f64 / rx_packets as f64),
            })
        })
        .collect();
    devices.sort_by(|a, b| {
        b.drops
            .cmp(&a.drops)
            .then(b.rx_dropped.cmp(&a.rx_dropped))
            .then(b.rx_packets.cmp(&a.rx_packets))
            .then(a.device.cmp(&b.device))
    });
    (softnet, devices)
}

/// netdrop's drops per (namespace, device name) in the interval, over every reason.
fn device_drops(prev: &Totals, now: &Totals) -> BTreeMap<(u32, String), u64> {
    let mut out = BTreeMap::new();
    for (k, &n) in &now.by_device {
        if k.ifindex == 0 {
            continue;
        }
        let was = prev.by_device.get(k).copied().unwrap_or(0);
        *out.entry((k.netns, c_str(&k.ifname))).or_default() += n.saturating_sub(was);
    }
    out
}

/// Devices shown in text.
const TEXT_DEVICES: usize = 10;

/// The text tables: CPUs whose backlog dropped or whose budget ran out in the interval
/// (a one-line total for the rest), and the busiest devices.
pub fn write_text(
    out: &mut impl Write,
    softnet: &[SoftnetRow],
    devices: &[DeviceRxRow],
) -> io::Result<()> {
    if !softnet.is_empty() {
        let sum = |f: fn(&SoftnetRow) -> u64| softnet.iter().map(f).sum::<u64>();
        writeln!(
            out,
            "  softnet ({SOFTNET_SOURCE}): {} CPUs, {} processed, {} dropped (backlog full), {} time_squeeze",
            softnet.len(),
            sum(|c| c.processed),
            sum(|c| c.dropped),
            sum(|c| c.time_squeeze)
        )?;
        let busy: Vec<&SoftnetRow> = softnet
            .iter()
            .filter(|c| c.dropped > 0 || c.time_squeeze > 0)
            .collect();
        if !busy.is_empty() {
            writeln!(
                out,
                "   {:>5} {:>10} {:>10} {:>12} {:>14}",
                "cpu", "processed", "dropped", "time_squeeze", "dropped total"
            )?;
            for c in busy {
                writeln!(
                    out,
                    "   {:>5} {:>10} {:>10} {:>12} {:>14}",
                    c.cpu, c.processed, c.dropped, c.time_squeeze, c.dropped_total
                )?;
            }
        }
    }
    if !devices.is_empty() {
        writeln!(out, "  devices ({DEVICES_SOURCE}):")?;
        writeln!(
            out,
            "   {:>10} {:>10} {:>8} {:>10} {:>8}  device",
            "rx", "drops", "ratio", "rx_dropped", "rx_fifo"
        )?;
        for d in devices.iter().take(TEXT_DEVICES) {
            let (drops, ratio) = match (d.drops, d.drop_ratio) {
                (Some(n), Some(r)) => (n.to_string(), format!("{:.2}%", 100.0 * r)),
                (Some(n), None) => (n.to_string(), "-".to_owned()),
                _ => ("-".to_owned(), "-".to_owned()),
            };
            let name = super::printable::printable(&d.device);
            writeln!(
                out,
                "   {:>10} {drops:>10} {ratio:>8} {:>10} {:>8}  {name} netns {}",
                d.rx_packets,
                d.rx_dropped,
                d.rx_fifo,
                text::netns_name(&d.netns)
            )?;
        }
        if devices.len() > TEXT_DEVICES {
            writeln!(out, "   ({} more devices)", devices.len() - TEXT_DEVICES)?;
        }
        if devices.iter().all(|d| d.drops.is_none()) {
            writeln!(
                out,
                "   (drops per device are counted with --by dev or --by netns, and in top)"
            )?;
        }
    }
    Ok(())
}

/// At most two lines for `top`'s header: the CPUs whose backlog dropped (or whose budget
/// ran out) in the interval, and the device with the most drops (else the busiest).
pub fn tui_lines(softnet: &[SoftnetRow], devices: &[DeviceRxRow]) -> Vec<String> {
    let mut out = Vec::new();
    let busy: Vec<String> = softnet
        .iter()
        .filter(|c| c.dropped > 0 || c.time_squeeze > 0)
        .map(|c| {
            format!(
                "cpu{} dropped {} squeezed {}",
                c.cpu, c.dropped, c.time_squeeze
            )
        })
        .collect();
    if !busy.is_empty() {
        out.push(format!("SOFTNET {}", busy.join(", ")));
    }
    if let Some(d) = devices.first() {
        let ratio = d
            .drop_ratio
            .map_or_else(String::new, |r| format!(" ({:.2}% of rx)", 100.0 * r));
        let drops = d.drops.map_or_else(|| "-".to_owned(), |n| n.to_string());
        out.push(format!(
            "DEVICE {} netns {}: rx {} drops {drops}{ratio} rx_dropped {}{}",
            super::printable::printable(&d.device),
            text::netns_name(&d.netns),
            d.rx_packets,
            d.rx_dropped,
            if devices.len() > 1 {
                format!(" (+{} more devices)", devices.len() - 1)
            } else {
                String::new()
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use netdrop_common::DeviceKey;

    use super::*;
    use crate::kernel::counters::{DevStats, SoftnetCpu};

    fn snapshot(rx: u64, rx_dropped: u64, dropped: u64) -> RxSnapshot {
        let mut s = RxSnapshot {
            softnet: vec![
                SoftnetCpu {
                    cpu: 0,
                    processed: 10 * rx,
                    dropped: 0,
                    time_squeeze: 0,
                },
                SoftnetCpu {
                    cpu: 1,
                    processed: rx,
                    dropped,
                    time_squeeze: dropped / 2,
                },
            ],
            ..Default::default()
        };
        for (ns, name, rx) in [(7, "veth0", rx), (7, "lo", 0), (9, "eth0", 3 * rx)] {
            s.devices.insert(
                (ns, name.to_owned()),
                DevStats {
                    name: name.to_owned(),
                    rx_packets: rx,
                    rx_dropped: if name == "veth0" { rx_dropped } else { 0 },
                    ..Default::default()
                },
            );
        }
        s
    }

    fn totals(drops: u64) -> Totals {
        let mut t = Totals::default();
        let mut ifname = [0u8; 16];
        ifname[..5].copy_from_slice(b"veth0");
        for reason in [2, 3] {
            t.by_device.insert(
                DeviceKey {
                    reason,
                    netns: 7,
                    ifindex: 2,
                    _pad: 0,
                    ifname,
                },
                drops,
            );
        }
        t
    }

    fn enricher() -> Enricher {
        Enricher::new(
            crate::kernel::reasons::Reasons::none(),
            std::path::Path::new("/nonexistent"),
            std::path::Path::new("/nonexistent"),
        )
    }

    #[test]
    fn ratio_per_device_and_softnet_per_cpu() {
        let (prev, now) = (snapshot(100, 1, 5), snapshot(300, 4, 25));
        let (t0, t1) = (totals(10), totals(60));
        let (softnet, devices) = rows(&mut enricher(), &prev, &now, (&t0, &t1), true);
        assert_eq!(softnet.len(), 2);
        assert_eq!(
            softnet[1],
            SoftnetRow {
                cpu: 1,
                processed: 200,
                dropped: 20,
                time_squeeze: 10,
                dropped_total: 25,
                time_squeeze_total: 12,
            }
        );
        // lo received nothing: left out. veth0 has the drops: first.
        let names: Vec<&str> = devices.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names, ["veth0", "eth0"]);
        let v = &devices[0];
        assert_eq!((v.rx_packets, v.rx_dropped, v.drops), (200, 3, Some(100)));
        assert_eq!(v.drop_ratio, Some(0.5));
        assert_eq!(v.netns.inode, 7);
        assert_eq!(
            (devices[1].drops, devices[1].drop_ratio),
            (Some(0), Some(0.0))
        );

        // Without per-device counts: receive counts only.
        let (_, devices) = rows(&mut enricher(), &prev, &now, (&t0, &t1), false);
        assert_eq!((devices[0].drops, devices[0].drop_ratio), (None, None));

        let mut out = Vec::new();
        let (softnet, devices) = rows(&mut enricher(), &prev, &now, (&t0, &t1), true);
        write_text(&mut out, &softnet, &devices).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "softnet (per CPU, from /proc/net/softnet_stat): 2 CPUs, 2200 processed, 20 dropped"
            ),
            "{text}"
        );
        assert!(
            text.contains("       1        200         20           10             25"),
            "{text}"
        );
        assert!(
            text.contains("          200        100   50.00%          3        0  veth0 netns 7"),
            "{text}"
        );
        assert_eq!(
            tui_lines(&softnet, &devices),
            [
                "SOFTNET cpu1 dropped 20 squeezed 10",
                "DEVICE veth0 netns 7: rx 200 drops 100 (50.00% of rx) rx_dropped 3 (+1 more devices)"
            ]
        );
        let v = serde_json::to_value(&devices[0]).unwrap();
        assert_eq!(v["drop_ratio"], 0.5);
        assert_eq!(v["netns"]["inode"], 7);
    }

    #[test]
    fn a_device_seen_first_starts_from_zero() {
        let prev = RxSnapshot::default();
        let now = snapshot(300, 4, 25);
        let t = Totals::default();
        let (softnet, devices) = rows(&mut enricher(), &prev, &now, (&t, &t), true);
        assert!(devices.is_empty(), "{devices:?}");
        assert!(softnet.iter().all(|c| c.dropped == 0));
    }
}
