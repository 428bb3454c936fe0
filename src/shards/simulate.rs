//! A what-if run for operators: how many shards move when nodes come and go.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{delta, rebalance, ShardMap, ShardMapError, SimulateError, MAX_NODES};

/// Setup of a [`simulate`] run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulateParams {
    /// Shard count.
    pub shards: u32,
    /// Initial nodes, named `node-1`, `node-2`, ... (zero-padded so that
    /// names sort by number).
    pub nodes: u32,
    /// Nodes (weight 1) that join after the first map.
    pub add: u32,
    /// Initial nodes that leave after the first map: the last `remove` ones.
    pub remove: u32,
    /// Weights of the initial nodes, one per node; `None`: all 1.
    pub weights: Option<Vec<u32>>,
}

impl Default for SimulateParams {
    fn default() -> Self {
        SimulateParams {
            shards: super::DEFAULT_SHARD_COUNT,
            nodes: 5,
            add: 0,
            remove: 0,
            weights: None,
        }
    }
}

/// One node's line in a [`SimulateReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulateRow {
    /// Node id.
    pub node: String,
    /// Weight (0 if the node left).
    pub weight: u32,
    /// Shards owned in the first map.
    pub before: u32,
    /// Shards owned after the change.
    pub after: u32,
}

/// Result of a [`simulate`] run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulateReport {
    /// Shard count.
    pub shards: u32,
    /// Shards whose owner changed between the two maps.
    pub moved: u32,
    /// Every node of either map, by id.
    pub rows: Vec<SimulateRow>,
}

/// Builds the first map for `params.nodes` nodes from an empty map, then
/// removes and adds nodes as asked and rebalances; reports the shards that
/// moved and every node's count before and after.
pub fn simulate(params: &SimulateParams) -> Result<SimulateReport, SimulateError> {
    if params.remove > params.nodes {
        return Err(SimulateError::RemoveTooMany {
            remove: params.remove,
            nodes: params.nodes,
        });
    }
    let total = u64::from(params.nodes) + u64::from(params.add);
    if total > MAX_NODES as u64 {
        return Err(ShardMapError::TooManyNodes(total as usize).into());
    }
    let weights = match &params.weights {
        Some(w) if w.len() != params.nodes as usize => {
            return Err(SimulateError::WeightsLength {
                expected: params.nodes,
                found: w.len(),
            })
        }
        Some(w) => w.clone(),
        None => vec![1; params.nodes as usize],
    };
    let width = total.to_string().len();
    let name = |i: u64| format!("node-{:0width$}", i + 1);
    let initial: Vec<(String, u32)> = (0..u64::from(params.nodes))
        .zip(weights)
        .map(|(i, w)| (name(i), w))
        .collect();
    let keep = (params.nodes - params.remove) as usize;
    let after: Vec<(String, u32)> = initial[..keep]
        .iter()
        .cloned()
        .chain((u64::from(params.nodes)..total).map(|i| (name(i), 1)))
        .collect();

    let first = rebalance(&ShardMap::new(params.shards)?, &initial)?;
    let second = rebalance(&first, &after)?;
    let moved = delta(&first, &second)?.moved;

    let (c1, c2) = (first.counts(), second.counts());
    let mut ids: Vec<&str> = c1.keys().chain(c2.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = ids
        .into_iter()
        .map(|id| SimulateRow {
            node: id.to_owned(),
            weight: second.node(id).map_or(0, |n| n.weight),
            before: c1.get(id).copied().unwrap_or(0),
            after: c2.get(id).copied().unwrap_or(0),
        })
        .collect();
    Ok(SimulateReport {
        shards: params.shards,
        moved,
        rows,
    })
}

impl fmt::Display for SimulateReport {
    /// An aligned table for a person, one node per line, then the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .rows
            .iter()
            .map(|r| r.node.len())
            .max()
            .unwrap_or(0)
            .max("node".len());
        writeln!(
            f,
            "{:<w$}  {:>6}  {:>7}  {:>7}  {:>7}",
            "node", "weight", "before", "after", "change"
        )?;
        for r in &self.rows {
            let change = match i64::from(r.after) - i64::from(r.before) {
                0 => "0".to_owned(),
                c => format!("{c:+}"),
            };
            writeln!(
                f,
                "{:<w$}  {:>6}  {:>7}  {:>7}  {:>7}",
                r.node, r.weight, r.before, r.after, change
            )?;
        }
        let pct = f64::from(self.moved) * 100.0 / f64::from(self.shards.max(1));
        write!(
            f,
            "moved {} of {} shards ({pct:.2}%)",
            self.moved, self.shards
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_leave_report() {
        let params = SimulateParams {
            shards: 100,
            nodes: 4,
            add: 1,
            remove: 1,
            weights: Some(vec![1, 1, 2, 1]),
        };
        let r = simulate(&params).unwrap();
        let rows: Vec<(&str, u32, u32, u32)> = r
            .rows
            .iter()
            .map(|r| (r.node.as_str(), r.weight, r.before, r.after))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("node-1", 1, 20, 20),
                ("node-2", 1, 20, 20),
                ("node-3", 2, 40, 40),
                ("node-4", 0, 20, 0),
                ("node-5", 1, 0, 20),
            ]
        );
        assert_eq!(r.moved, 20);
        let table = r.to_string();
        assert!(
            table.contains("node-4       0       20        0      -20"),
            "{table}"
        );
        assert!(
            table.ends_with("moved 20 of 100 shards (20.00%)"),
            "{table}"
        );
    }

    #[test]
    fn bad_setups_are_errors() {
        let p = |nodes, remove, weights| SimulateParams {
            nodes,
            remove,
            weights,
            ..SimulateParams::default()
        };
        assert!(matches!(
            simulate(&p(2, 3, None)),
            Err(SimulateError::RemoveTooMany { .. })
        ));
        assert!(matches!(
            simulate(&p(2, 0, Some(vec![1]))),
            Err(SimulateError::WeightsLength { .. })
        ));
        assert!(matches!(
            simulate(&SimulateParams {
                shards: 0,
                ..SimulateParams::default()
            }),
            Err(SimulateError::Map(ShardMapError::InvalidShardCount(0)))
        ));
    }
}
