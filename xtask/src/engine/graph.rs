//! The repo graph: which repo must be built before which, and in what levels.
//!
//! Pure data and functions: edges come in already resolved (from `cargo metadata` through
//! [`crate::engine::metadata`], and from the manifest's `after`), and this module orders them. It
//! never runs a process.
//!
//! Edge direction: `upstream → downstream`, i.e. an edge A → B means "B depends on A, so
//! A is built first".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an edge exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeOrigin {
    /// A normal (`[dependencies]`) dependency in the downstream repo's resolved graph.
    Normal,
    /// A `[build-dependencies]` dependency.
    Build,
    /// A `[dev-dependencies]` dependency (tests, examples, benches).
    Dev,
    /// A manifest `after` entry: an ordering cargo cannot see.
    After,
}

impl fmt::Display for EdgeOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EdgeOrigin::Normal => "normal",
            EdgeOrigin::Build => "build",
            EdgeOrigin::Dev => "dev",
            EdgeOrigin::After => "after",
        })
    }
}

/// A directed graph over repo names with labelled edges.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: BTreeSet<String>,
    /// upstream -> downstream -> origins
    edges: BTreeMap<String, BTreeMap<String, BTreeSet<EdgeOrigin>>>,
}

/// A cycle found while ordering, as the list of repos around it; `Display` reads
/// `a → b → a`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle: {}: a chain must be a DAG; remove one edge (an `after` entry or a dependency)", .0.join(" → "))]
pub struct Cycle(pub Vec<String>);

impl Graph {
    /// An empty graph holding `nodes`.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(nodes: I) -> Graph {
        Graph {
            nodes: nodes.into_iter().map(Into::into).collect(),
            edges: BTreeMap::new(),
        }
    }

    /// Add the edge `upstream → downstream` with `origin` (idempotent). Self edges are
    /// ignored: a repo's own workspace members depending on each other is not an ordering.
    pub fn add_edge(&mut self, upstream: &str, downstream: &str, origin: EdgeOrigin) {
        if upstream == downstream {
            return;
        }
        self.nodes.insert(upstream.to_owned());
        self.nodes.insert(downstream.to_owned());
        self.edges
            .entry(upstream.to_owned())
            .or_default()
            .entry(downstream.to_owned())
            .or_default()
            .insert(origin);
    }

    /// Every edge as `(upstream, downstream, origins)`, sorted.
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str, &BTreeSet<EdgeOrigin>)> {
        self.edges
            .iter()
            .flat_map(|(u, ds)| ds.iter().map(move |(d, o)| (u.as_str(), d.as_str(), o)))
    }

    /// Direct upstream repos of `node`, sorted.
    pub fn upstream(&self, node: &str) -> Vec<&str> {
        self.edges
            .iter()
            .filter(|(_, ds)| ds.contains_key(node))
            .map(|(u, _)| u.as_str())
            .collect()
    }

    /// Direct downstream repos of `node`, sorted.
    pub fn downstream(&self, node: &str) -> Vec<&str> {
        self.edges
            .get(node)
            .map(|ds| ds.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Every repo downstream of any of `nodes` (transitively), not including them.
    pub fn downstream_closure(&self, nodes: &[&str]) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = nodes.to_vec();
        while let Some(n) = stack.pop() {
            for d in self.downstream(n) {
                if seen.insert(d.to_owned()) {
                    stack.push(d);
                }
            }
        }
        for n in nodes {
            seen.remove(*n);
        }
        seen
    }

    /// Every repo upstream of any of `nodes` (transitively), not including them.
    pub fn upstream_closure(&self, nodes: &[&str]) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = nodes.to_vec();
        while let Some(n) = stack.pop() {
            for u in self.upstream(n) {
                if seen.insert(u.to_owned()) {
                    stack.push(u);
                }
            }
        }
        for n in nodes {
            seen.remove(*n);
        }
        seen
    }

    /// Topological levels: level 0 holds repos with no upstream, level k the repos whose
    /// upstreams all sit in levels < k (longest-path layering, Kahn's algorithm). Repos in
    /// one level do not depend on each other; within a level they are sorted by name, so
    /// the order is deterministic.
    ///
    /// Errors with a [`Cycle`] naming the repos around one cycle.
    pub fn levels(&self) -> Result<Vec<Vec<String>>, Cycle> {
        let mut indegree: BTreeMap<&str, usize> =
            self.nodes.iter().map(|n| (n.as_str(), 0)).collect();
        for (_, d, _) in self.edges() {
            *indegree.get_mut(d).expect("edge nodes are nodes") += 1;
        }
        let mut levels = Vec::new();
        let mut ready: Vec<&str> = indegree
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut done = 0;
        while !ready.is_empty() {
            ready.sort_unstable();
            let mut next = Vec::new();
            for n in &ready {
                for d in self.downstream(n) {
                    let deg = indegree.get_mut(d).expect("edge nodes are nodes");
                    *deg -= 1;
                    if *deg == 0 {
                        next.push(d);
                    }
                }
            }
            done += ready.len();
            levels.push(ready.iter().map(|s| (*s).to_owned()).collect());
            ready = next;
        }
        if done == self.nodes.len() {
            return Ok(levels);
        }
        // Every node left has an upstream that is left too: walk upstream edges from the
        // smallest remaining node until a node repeats; that loop is a cycle.
        let left: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, &d)| d > 0)
            .map(|(n, _)| *n)
            .collect();
        let start = *left.iter().next().expect("a cycle leaves nodes");
        let mut path = vec![start];
        loop {
            let cur = *path.last().expect("non-empty");
            let up = self
                .upstream(cur)
                .into_iter()
                .find(|u| left.contains(u))
                .expect("a node left over has an upstream left over");
            if let Some(i) = path.iter().position(|p| *p == up) {
                // path holds downstream → upstream; print in dependency direction.
                let mut cycle: Vec<String> =
                    path[i..].iter().rev().map(|s| (*s).to_owned()).collect();
                // Start at the smallest name so the message is the same on every run.
                let min = (0..cycle.len())
                    .min_by_key(|&k| &cycle[k])
                    .expect("non-empty");
                cycle.rotate_left(min);
                cycle.push(cycle[0].clone());
                return Err(Cycle(cycle));
            }
            path.push(up);
        }
    }

    /// The nodes in run order: levels flattened.
    pub fn order(&self) -> Result<Vec<String>, Cycle> {
        Ok(self.levels()?.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EdgeOrigin::*;

    #[test]
    fn diamond_levels() {
        let mut g = Graph::new(["a", "b", "c", "d"]);
        g.add_edge("a", "b", Normal);
        g.add_edge("a", "c", Normal);
        g.add_edge("b", "d", Normal);
        g.add_edge("c", "d", Dev);
        assert_eq!(
            g.levels().unwrap(),
            vec![
                vec!["a".to_owned()],
                vec!["b".into(), "c".into()],
                vec!["d".into()]
            ]
        );
    }

    #[test]
    fn cycle_is_named() {
        let mut g = Graph::new(["x", "node", "sdk"]);
        g.add_edge("node", "sdk", Normal);
        g.add_edge("sdk", "node", Dev);
        g.add_edge("x", "node", Normal);
        let c = g.levels().unwrap_err();
        assert_eq!(c.0, ["node", "sdk", "node"]);
        assert!(c.to_string().contains("node → sdk → node"), "{c}");
    }

    #[test]
    fn closures() {
        let mut g = Graph::new(["a", "b", "c", "d"]);
        g.add_edge("a", "b", Normal);
        g.add_edge("b", "c", After);
        assert_eq!(
            g.downstream_closure(&["a"]).into_iter().collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(
            g.upstream_closure(&["c"]).into_iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
