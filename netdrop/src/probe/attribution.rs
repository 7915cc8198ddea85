//! The kernel's attribution maps (per location, device, flow), kept from filling up for good.
//!
//! Each kind has two maps; the `GENERATION` array tells the programs which one to count
//! into. [`Attribution::drain`] drains the map the programs left at the previous switch
//! (at least [`MIN_SWITCH_INTERVAL`] ago, so no program still writes to it) into bounded
//! user-space tables ([`Held`]), then switches. Reads add the held totals to what both maps
//! hold now, so totals stay exact while the kernel side always has room for what drops now.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use aya::{
    Ebpf, Pod,
    maps::{Array, MapData, PerCpuHashMap},
};
use netdrop_common::{DeviceKey, FlowKey, LocationKey, config, map};

use crate::{aggregate::held::Held, error::Error};

/// Shortest time between two switches: far longer than any program run, so the map left at
/// a switch has no writer by the time it is drained.
pub const MIN_SWITCH_INTERVAL: Duration = Duration::from_millis(200);

/// How often [`start_draining`]'s thread drains.
pub const DRAIN_EVERY: Duration = Duration::from_secs(1);

/// Drains `a` every [`DRAIN_EVERY`] on a thread of its own, until the probe holding `a` is
/// gone. Nothing to do (no thread) when no attribution is counted.
pub fn start_draining(a: &Arc<Mutex<Attribution>>) {
    let lock = |a: &Mutex<Attribution>| {
        let g = a.lock().unwrap_or_else(PoisonError::into_inner);
        g.location.is_some() || g.device.is_some() || g.flow.is_some()
    };
    if !lock(a) {
        return;
    }
    let weak = Arc::downgrade(a);
    let spawned = std::thread::Builder::new()
        .name("netdrop-drain".into())
        .spawn(move || {
            let mut warned = false;
            loop {
                std::thread::sleep(DRAIN_EVERY);
                let Some(a) = weak.upgrade() else { break };
                let res = a.lock().unwrap_or_else(PoisonError::into_inner).drain();
                if let Err(e) = res
                    && !warned
                {
                    tracing::warn!("draining the kernel's attribution maps: {e}");
                    warned = true;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(
            "cannot start the drain thread ({e}): per-location, device and flow tables fill up for good"
        );
    }
}

/// One kind of attribution: its two kernel maps and what was drained from them.
struct Pair<K: Pod> {
    name: [&'static str; 2],
    maps: [PerCpuHashMap<MapData, K, u64>; 2],
    held: Held<K>,
}

impl<K: Pod + Copy + Eq + std::hash::Hash + Ord> Pair<K> {
    fn take(ebpf: &mut Ebpf, name: [&'static str; 2], capacity: usize) -> Result<Self, Error> {
        let mut open = |n: &'static str| -> Result<PerCpuHashMap<MapData, K, u64>, Error> {
            let m = ebpf.take_map(n).ok_or_else(|| super::missing_map(n))?;
            PerCpuHashMap::try_from(m).map_err(super::map_error(n))
        };
        Ok(Self {
            maps: [open(name[0])?, open(name[1])?],
            name,
            held: Held::new(capacity),
        })
    }

    /// Moves everything in map `idx` into the held table.
    fn drain(&mut self, idx: usize) -> Result<(), Error> {
        let name = self.name[idx];
        let map_err = super::map_error(name);
        let m = &mut self.maps[idx];
        let keys: Vec<K> = m.keys().collect::<Result<_, _>>().map_err(map_err)?;
        for k in keys {
            let n: u64 = m.get(&k, 0).map_err(map_err)?.iter().sum();
            m.remove(&k).map_err(map_err)?;
            self.held.add(k, n);
        }
        self.held.end_round();
        Ok(())
    }

    /// Held totals plus both maps' current contents.
    fn totals(&self) -> Result<HashMap<K, u64>, Error> {
        let mut live = Vec::new();
        for (m, name) in self.maps.iter().zip(self.name) {
            for item in m.iter() {
                let (k, v) = item.map_err(super::map_error(name))?;
                live.push((k, v.iter().sum::<u64>()));
            }
        }
        Ok(self.held.with_live(live))
    }
}

/// The attribution maps a probe counts into, those its configuration enables.
pub struct Attribution {
    generation: Array<MapData, u32>,
    current: u32,
    switched: Instant,
    location: Option<Pair<LocationKey>>,
    device: Option<Pair<DeviceKey>>,
    flow: Option<Pair<FlowKey>>,
}

/// Counts by location, device and flow since start, and the drops let go to stay bounded.
#[derive(Default)]
pub struct AttributionTotals {
    pub by_location: HashMap<LocationKey, u64>,
    pub by_device: HashMap<DeviceKey, u64>,
    pub by_flow: HashMap<FlowKey, u64>,
    /// Drops no longer held per kind: (location, device, flow).
    pub evicted: (u64, u64, u64),
}

impl Attribution {
    /// Takes the maps enabled by `flags` out of `ebpf`. User space holds as many keys of
    /// each kind as the kernel map has room for.
    pub fn take(ebpf: &mut Ebpf, flags: u32, flow_capacity: u32) -> Result<Self, Error> {
        let g = ebpf
            .take_map(map::GENERATION)
            .ok_or_else(|| super::missing_map(map::GENERATION))?;
        let generation = Array::try_from(g).map_err(super::map_error(map::GENERATION))?;
        let on = |bit: u32| flags & bit != 0;
        Ok(Self {
            generation,
            current: 0,
            switched: Instant::now(),
            location: on(config::BY_LOCATION)
                .then(|| {
                    Pair::take(
                        ebpf,
                        map::BY_LOCATION,
                        netdrop_common::MAX_LOCATIONS as usize,
                    )
                })
                .transpose()?,
            device: on(config::BY_DEVICE)
                .then(|| Pair::take(ebpf, map::BY_DEVICE, netdrop_common::MAX_DEVICES as usize))
                .transpose()?,
            flow: on(config::BY_FLOW)
                .then(|| Pair::take(ebpf, map::BY_FLOW, flow_capacity as usize))
                .transpose()?,
        })
    }

    /// Drains the maps the programs left at the previous switch and switches again, unless
    /// that switch was too recent. Cheap to call often.
    pub fn drain(&mut self) -> Result<(), Error> {
        if self.switched.elapsed() < MIN_SWITCH_INTERVAL {
            return Ok(());
        }
        let idle = (1 - self.current) as usize;
        if let Some(p) = &mut self.location {
            p.drain(idle)?;
        }
        if let Some(p) = &mut self.device {
            p.drain(idle)?;
        }
        if let Some(p) = &mut self.flow {
            p.drain(idle)?;
        }
        let next = 1 - self.current;
        self.generation
            .set(0, next, 0)
            .map_err(super::map_error(map::GENERATION))?;
        self.current = next;
        self.switched = Instant::now();
        Ok(())
    }

    /// Everything counted so far.
    pub fn totals(&self) -> Result<AttributionTotals, Error> {
        Ok(AttributionTotals {
            by_location: self
                .location
                .as_ref()
                .map(Pair::totals)
                .transpose()?
                .unwrap_or_default(),
            by_device: self
                .device
                .as_ref()
                .map(Pair::totals)
                .transpose()?
                .unwrap_or_default(),
            by_flow: self
                .flow
                .as_ref()
                .map(Pair::totals)
                .transpose()?
                .unwrap_or_default(),
            evicted: (
                self.location.as_ref().map_or(0, |p| p.held.evicted()),
                self.device.as_ref().map_or(0, |p| p.held.evicted()),
                self.flow.as_ref().map_or(0, |p| p.held.evicted()),
            ),
        })
    }
}
