//! Adjacency indexes for edge tables.
//!
//! An edge table snapshot becomes two petgraph [`Csr`]s, outgoing (src → dst) and incoming
//! (dst → src), over dense node ordinals (row positions in the endpoint tables' snapshots).
//! `Csr` holds unique `(u, v)` pairs only, but a property graph has parallel edges, so each Csr
//! edge carries a run into a side array of edge row ids: every edge row is reachable.

use petgraph::csr::Csr;

/// The most edges one adjacency can index (edge rows are `u32`).
pub const MAX_EDGES: usize = u32::MAX as usize;

/// A run of edge rows sharing one `(u, v)` pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EdgeRun {
    start: u32,
    len: u32,
}

#[derive(Debug)]
struct Direction {
    csr: Csr<(), EdgeRun, petgraph::Directed, u32>,
    edge_rows: Vec<u32>,
}

impl Direction {
    /// `pairs[i] = (from, to)` for edge row `i`.
    fn build(pairs: &[(u32, u32)]) -> Direction {
        let mut order: Vec<u32> = (0..pairs.len() as u32).collect();
        order.sort_unstable_by_key(|&row| (pairs[row as usize], row));
        let mut runs: Vec<(u32, u32, EdgeRun)> = Vec::new();
        for (position, &row) in order.iter().enumerate() {
            let (u, v) = pairs[row as usize];
            match runs.last_mut() {
                Some((lu, lv, run)) if *lu == u && *lv == v => run.len += 1,
                _ => runs.push((
                    u,
                    v,
                    EdgeRun {
                        start: position as u32,
                        len: 1,
                    },
                )),
            }
        }
        let csr = Csr::from_sorted_edges(&runs)
            .expect("runs are sorted by (u, v) and unique by construction");
        debug_assert_eq!(csr.edge_count(), runs.len());
        Direction {
            csr,
            edge_rows: order,
        }
    }

    fn for_each(&self, node: u32, mut f: impl FnMut(u32, u32)) {
        if node as usize >= self.csr.node_count() {
            return;
        }
        let neighbours = self.csr.neighbors_slice(node);
        let runs = self.csr.edges_slice(node);
        for (&neighbour, run) in neighbours.iter().zip(runs) {
            let rows = &self.edge_rows[run.start as usize..(run.start + run.len) as usize];
            for &row in rows {
                f(neighbour, row);
            }
        }
    }

    fn neighbours(&self, node: u32) -> &[u32] {
        if node as usize >= self.csr.node_count() {
            return &[];
        }
        self.csr.neighbors_slice(node)
    }

    fn degree(&self, node: u32) -> usize {
        if node as usize >= self.csr.node_count() {
            return 0;
        }
        self.csr
            .edges_slice(node)
            .iter()
            .map(|r| r.len as usize)
            .sum()
    }
}

/// Outgoing and incoming adjacency of one edge table snapshot.
#[derive(Debug)]
pub struct Adjacency {
    out: Direction,
    inc: Direction,
    edge_count: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooManyEdges(pub usize);

impl std::fmt::Display for TooManyEdges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} edges exceed the limit of {MAX_EDGES} per edge table",
            self.0
        )
    }
}

impl Adjacency {
    /// Builds both directions from `(src ordinal, dst ordinal)` of each edge row, in row order.
    pub fn build(pairs: &[(u32, u32)]) -> Result<Adjacency, TooManyEdges> {
        if pairs.len() > MAX_EDGES {
            return Err(TooManyEdges(pairs.len()));
        }
        let reversed: Vec<(u32, u32)> = pairs.iter().map(|&(s, d)| (d, s)).collect();
        Ok(Adjacency {
            out: Direction::build(pairs),
            inc: Direction::build(&reversed),
            edge_count: pairs.len(),
        })
    }

    /// Like [`Adjacency::build`], where `pairs[i]` is edge row `rows[i]`: for edge tables
    /// some of whose rows are left out (an endpoint key that matches no node).
    pub fn build_with_rows(pairs: &[(u32, u32)], rows: &[u32]) -> Result<Adjacency, TooManyEdges> {
        assert_eq!(pairs.len(), rows.len(), "one row id per pair");
        let mut adjacency = Self::build(pairs)?;
        for direction in [&mut adjacency.out, &mut adjacency.inc] {
            for row in direction.edge_rows.iter_mut() {
                *row = rows[*row as usize];
            }
        }
        Ok(adjacency)
    }

    pub fn edge_count(&self) -> usize {
        self.edge_count
    }

    /// Calls `f(dst, edge_row)` for every edge leaving `src`.
    pub fn for_each_out(&self, src: u32, f: impl FnMut(u32, u32)) {
        self.out.for_each(src, f)
    }

    /// Calls `f(src, edge_row)` for every edge entering `dst`.
    pub fn for_each_in(&self, dst: u32, f: impl FnMut(u32, u32)) {
        self.inc.for_each(dst, f)
    }

    /// The distinct nodes `src` has an edge to (parallel edges once).
    pub fn neighbours_out(&self, src: u32) -> &[u32] {
        self.out.neighbours(src)
    }

    /// The distinct nodes with an edge to `dst` (parallel edges once).
    pub fn neighbours_in(&self, dst: u32) -> &[u32] {
        self.inc.neighbours(dst)
    }

    pub fn out_degree(&self, src: u32) -> usize {
        self.out.degree(src)
    }

    pub fn in_degree(&self, dst: u32) -> usize {
        self.inc.degree(dst)
    }

    /// Approximate heap bytes, for the cache's memory budget.
    pub fn heap_bytes(&self) -> usize {
        // Per direction: row offsets, columns, runs and edge rows.
        let per = |d: &Direction| {
            d.csr.node_count() * 8 + d.csr.edge_count() * 12 + d.edge_rows.len() * 4
        };
        per(&self.out) + per(&self.inc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(adj: &Adjacency, n: u32) -> Vec<(u32, u32)> {
        let mut v = vec![];
        adj.for_each_out(n, |m, r| v.push((m, r)));
        v
    }

    fn inc(adj: &Adjacency, n: u32) -> Vec<(u32, u32)> {
        let mut v = vec![];
        adj.for_each_in(n, |m, r| v.push((m, r)));
        v
    }

    #[test]
    fn both_directions_and_parallel_edges() {
        // rows: 0:(0->1) 1:(0->2) 2:(0->1 again) 3:(2->0) 4:(1->1 self loop)
        let adj = Adjacency::build(&[(0, 1), (0, 2), (0, 1), (2, 0), (1, 1)]).unwrap();
        assert_eq!(out(&adj, 0), vec![(1, 0), (1, 2), (2, 1)]);
        assert_eq!(out(&adj, 1), vec![(1, 4)]);
        assert_eq!(out(&adj, 2), vec![(0, 3)]);
        assert_eq!(inc(&adj, 1), vec![(0, 0), (0, 2), (1, 4)]);
        assert_eq!(inc(&adj, 0), vec![(2, 3)]);
        assert_eq!(adj.out_degree(0), 3);
        assert_eq!(adj.in_degree(2), 1);
        assert_eq!(adj.edge_count(), 5);
        // Distinct neighbours: the parallel edge 0->1 once; unknown nodes have none.
        let sorted = |s: &[u32]| {
            let mut v = s.to_vec();
            v.sort();
            v
        };
        assert_eq!(sorted(adj.neighbours_out(0)), vec![1, 2]);
        assert_eq!(sorted(adj.neighbours_in(1)), vec![0, 1]);
        assert!(adj.neighbours_out(99).is_empty());
    }

    #[test]
    fn row_ids_can_skip_dangling_edges() {
        // Edge rows 0 and 2 survive; row 1 had a dangling endpoint.
        let adj = Adjacency::build_with_rows(&[(0, 1), (1, 0)], &[0, 2]).unwrap();
        assert_eq!(out(&adj, 0), vec![(1, 0)]);
        assert_eq!(out(&adj, 1), vec![(0, 2)]);
        assert_eq!(inc(&adj, 0), vec![(1, 2)]);
    }

    #[test]
    fn unknown_and_isolated_nodes_have_no_neighbours() {
        let adj = Adjacency::build(&[(0, 1)]).unwrap();
        assert!(out(&adj, 1).is_empty());
        assert!(out(&adj, 99).is_empty());
        assert_eq!(adj.in_degree(99), 0);
        let empty = Adjacency::build(&[]).unwrap();
        assert!(out(&empty, 0).is_empty());
    }

    #[test]
    fn matches_a_naive_scan_on_random_edges() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 50) as u32
        };
        let pairs: Vec<(u32, u32)> = (0..2000).map(|_| (next(), next())).collect();
        let adj = Adjacency::build(&pairs).unwrap();
        for n in 0..50 {
            let mut got = out(&adj, n);
            got.sort();
            let mut want: Vec<(u32, u32)> = pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.0 == n)
                .map(|(r, p)| (p.1, r as u32))
                .collect();
            want.sort();
            assert_eq!(got, want, "out({n})");
            let mut got = inc(&adj, n);
            got.sort();
            let mut want: Vec<(u32, u32)> = pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.1 == n)
                .map(|(r, p)| (p.0, r as u32))
                .collect();
            want.sort();
            assert_eq!(got, want, "in({n})");
        }
    }
}
