//! `netdrop diagnose`: from what was seen (drop reasons and locations, kernel counters,
//! sockets, settings) to what is wrong, how sure, where, and which setting fixes it.
//!
//! `evidence` is the plain data; `classes` the 22 drop classes of the field guides as one
//! table; `rules` turns evidence into findings; `knobs` and `nft` read the live settings
//! and firewall rules. Collection itself lives with the command (`commands::diagnose`).

pub mod classes;
pub mod evidence;
pub mod knobs;
pub mod nft;
pub mod rules;

use serde::Serialize;

use self::{
    evidence::{Count, Evidence},
    rules::Finding,
};

/// Version of the `--json` document; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole diagnosis: findings worst first, the drops no class explains, and the evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    /// When the watch ended (RFC 3339).
    pub time: String,
    pub findings: Vec<Finding>,
    /// Drop reasons no class explains (e.g. NOT_SPECIFIED), with counts.
    pub other_drops: Vec<Count>,
    pub evidence: Evidence,
}

impl Report {
    /// Applies the rules to `evidence`.
    pub fn new(evidence: Evidence, time: String) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            time,
            findings: rules::findings(&evidence),
            other_drops: rules::unexplained(&evidence)
                .into_iter()
                .map(|(name, count)| Count {
                    name,
                    count,
                    inferred: false,
                })
                .collect(),
            evidence,
        }
    }
}
