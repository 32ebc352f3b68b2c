//! The Leiden algorithm (Traag, Waltman & van Eck, Sci. Rep. 2019) on a weighted undirected
//! graph, optimising modularity with a resolution γ — what scanpy's `tl.leiden(flavor='igraph',
//! n_iterations=2)` runs through igraph, and so what CellTypist's over-clustering uses:
//! Q = Σ_ij (A_ij − γ k_i k_j / 2m) δ(c_i, c_j).
//!
//! Each iteration: fast local moving (a queue of nodes in random order; a node moves to the
//! neighbouring community of largest gain, its neighbours outside that community are queued
//! again), then refinement (within each community, singletons merge into the well-connected
//! sub-community of largest gain: the θ → 0 limit of the paper's randomised choice), then
//! aggregation of the refined partition with the unrefined one as its starting partition, until
//! local moving leaves every aggregate node on its own. Seeded: the same graph and seed give the
//! same clusters.
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{Result, SclabelError};

/// A weighted undirected graph in CSR form: both directions stored, self-loops allowed (an
/// aggregate's internal weight, counted as A_ii).
#[derive(Debug, Clone)]
pub struct Graph {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub weights: Vec<f64>,
}

impl Graph {
    pub fn n_nodes(&self) -> usize {
        self.indptr.len() - 1
    }

    fn neighbours(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        (self.indptr[i]..self.indptr[i + 1]).map(move |p| (self.indices[p] as usize, self.weights[p]))
    }

    /// k_i: the sum of each node's row (its self-loop included).
    fn strengths(&self) -> Vec<f64> {
        (0..self.n_nodes()).map(|i| self.neighbours(i).map(|(_, w)| w).sum()).collect()
    }

    /// The graph of `membership`'s communities (0..n_communities): A_CD = Σ_{i∈C, j∈D} A_ij.
    fn aggregate(&self, membership: &[usize], n_communities: usize) -> Graph {
        let mut members = vec![Vec::new(); n_communities];
        for (i, &c) in membership.iter().enumerate() {
            members[c].push(i);
        }
        let (mut indptr, mut indices, mut weights) = (vec![0], Vec::new(), Vec::new());
        let mut row = vec![0f64; n_communities];
        let mut touched = Vec::new();
        for nodes in &members {
            for &i in nodes {
                for (j, w) in self.neighbours(i) {
                    let d = membership[j];
                    if row[d] == 0.0 {
                        touched.push(d);
                    }
                    row[d] += w;
                }
            }
            touched.sort_unstable();
            for &d in &touched {
                indices.push(d as u32);
                weights.push(row[d]);
                row[d] = 0.0;
            }
            touched.clear();
            indptr.push(indices.len());
        }
        Graph { indptr, indices, weights }
    }
}

/// Leiden's options: γ, the number of iterations (scanpy's igraph flavour: 2) and the seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeidenOptions {
    pub resolution: f64,
    pub n_iterations: usize,
    pub seed: u64,
}

/// Community of each node, numbered by size (0 the largest; ties by first node).
pub fn leiden(graph: &Graph, options: &LeidenOptions) -> Result<Vec<u32>> {
    let n = graph.n_nodes();
    if !(options.resolution.is_finite() && options.resolution > 0.0) {
        return Err(SclabelError::InvalidOption { option: "resolution".into(), reason: format!("must be a positive number (got {})", options.resolution) });
    }
    if let Some(w) = graph.weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(SclabelError::values(format!("a graph weight is {w}; weights must be finite and ≥ 0")));
    }
    let strengths = graph.strengths();
    let two_m: f64 = strengths.iter().sum();
    let mut membership: Vec<usize> = (0..n).collect();
    if n == 0 || two_m <= 0.0 {
        return Ok(membership.iter().map(|&c| c as u32).collect());
    }
    let scale = options.resolution / two_m;
    let mut rng = StdRng::seed_from_u64(options.seed);
    for _ in 0..options.n_iterations.max(1) {
        // One iteration: levels of move → refine → aggregate, starting from `membership`.
        let mut g = graph.clone();
        let mut k = strengths.clone();
        let mut partition = renumber(&membership);
        // Original node → node of the current level's graph.
        let mut node_of: Vec<usize> = (0..n).collect();
        loop {
            move_nodes(&g, &k, scale, &mut partition, &mut rng);
            let n_comms = partition.iter().max().map_or(0, |m| m + 1);
            if n_comms == g.n_nodes() {
                break;
            }
            let mut refined = refine(&g, &k, scale, &partition, &mut rng);
            if refined.iter().max().map_or(0, |m| m + 1) == g.n_nodes() {
                // Refinement merged nothing: aggregate the communities themselves (as Louvain
                // does), so every level shrinks the graph.
                refined = partition.clone();
            }
            let n_refined = refined.iter().max().map_or(0, |m| m + 1);
            let mut parent = vec![0usize; n_refined];
            for (i, &r) in refined.iter().enumerate() {
                parent[r] = partition[i];
            }
            let next = g.aggregate(&refined, n_refined);
            let mut next_k = vec![0f64; n_refined];
            for (i, &r) in refined.iter().enumerate() {
                next_k[r] += k[i];
            }
            node_of.iter_mut().for_each(|v| *v = refined[*v]);
            g = next;
            k = next_k;
            partition = parent;
        }
        membership = node_of.iter().map(|&v| partition[v]).collect();
    }
    Ok(by_size(&membership))
}

/// Communities numbered 0.. in order of first appearance.
fn renumber(membership: &[usize]) -> Vec<usize> {
    let mut map = std::collections::HashMap::new();
    membership
        .iter()
        .map(|&c| {
            let next = map.len();
            *map.entry(c).or_insert(next)
        })
        .collect()
}

/// Communities numbered by decreasing size, ties by their first node (as scanpy orders them).
fn by_size(membership: &[usize]) -> Vec<u32> {
    let m = renumber(membership);
    let n_c = m.iter().max().map_or(0, |v| v + 1);
    let mut size = vec![0usize; n_c];
    m.iter().for_each(|&c| size[c] += 1);
    let mut order: Vec<usize> = (0..n_c).collect();
    order.sort_by(|&a, &b| size[b].cmp(&size[a]).then(a.cmp(&b)));
    let mut rank = vec![0u32; n_c];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r as u32;
    }
    m.iter().map(|&c| rank[c]).collect()
}

/// Fast local moving: each node to its neighbouring community of largest modularity gain
/// w(i, C) − γ k_i K_C / 2m (or a community of its own), until no node moves.
fn move_nodes(g: &Graph, k: &[f64], scale: f64, partition: &mut Vec<usize>, rng: &mut StdRng) {
    let n = g.n_nodes();
    // Room for every node alone: a node leaving its community may take an empty one.
    let mut total = vec![0f64; n];
    let mut size = vec![0usize; n];
    for i in 0..n {
        total[partition[i]] += k[i];
        size[partition[i]] += 1;
    }
    // Communities with no node, free for a node that is better off alone.
    let mut empty: Vec<usize> = (0..n).filter(|&c| size[c] == 0).collect();
    let mut queue: std::collections::VecDeque<usize> = {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        order.into()
    };
    let mut queued = vec![true; n];
    let mut weight_to = vec![0f64; n];
    let mut is_seen = vec![false; n];
    let mut seen: Vec<usize> = Vec::new();
    while let Some(i) = queue.pop_front() {
        queued[i] = false;
        let own = partition[i];
        for (j, w) in g.neighbours(i) {
            if j == i {
                continue;
            }
            let c = partition[j];
            if !is_seen[c] {
                is_seen[c] = true;
                seen.push(c);
            }
            weight_to[c] += w;
        }
        // Gains with i taken out of its community (staying where it is alone gains 0).
        total[own] -= k[i];
        size[own] -= 1;
        let (mut best, mut best_gain) = (own, weight_to[own] - scale * k[i] * total[own]);
        for &c in &seen {
            let gain = weight_to[c] - scale * k[i] * total[c];
            if gain > best_gain {
                (best, best_gain) = (c, gain);
            }
        }
        if best_gain < 0.0 {
            // Alone is better than any community (own is not empty here: alone there gains 0).
            best = empty.pop().expect("a free community");
        }
        total[best] += k[i];
        size[best] += 1;
        partition[i] = best;
        if size[own] == 0 {
            empty.push(own);
        }
        for &c in &seen {
            weight_to[c] = 0.0;
            is_seen[c] = false;
        }
        seen.clear();
        if best != own {
            for (j, _) in g.neighbours(i) {
                if !queued[j] && partition[j] != best {
                    queued[j] = true;
                    queue.push_back(j);
                }
            }
        }
    }
    *partition = renumber(partition);
}

/// Leiden's refinement: within each community of `partition`, starting from singletons, each
/// well-connected singleton (in random order) joins the well-connected refined community of its
/// own community with the largest non-negative gain.
fn refine(g: &Graph, k: &[f64], scale: f64, partition: &[usize], rng: &mut StdRng) -> Vec<usize> {
    let n = g.n_nodes();
    let n_comms = partition.iter().max().map_or(0, |m| m + 1);
    let mut comm_total = vec![0f64; n_comms];
    for i in 0..n {
        comm_total[partition[i]] += k[i];
    }
    let mut refined: Vec<usize> = (0..n).collect();
    let mut ref_total: Vec<f64> = k.to_vec();
    let mut singleton = vec![true; n];
    // w(R, C − R) per refined community R: the weight from R to the rest of its community.
    let mut external = vec![0f64; n];
    for i in 0..n {
        external[i] = g.neighbours(i).filter(|&(j, _)| j != i && partition[j] == partition[i]).map(|(_, w)| w).sum();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut weight_to = vec![0f64; n];
    let mut is_seen = vec![false; n];
    let mut seen: Vec<usize> = Vec::new();
    for i in order {
        let c = partition[i];
        // Only singletons that are well connected to their community move.
        if !singleton[i] || external[i] < scale * k[i] * (comm_total[c] - k[i]) {
            continue;
        }
        for (j, w) in g.neighbours(i) {
            if j != i && partition[j] == c {
                let r = refined[j];
                if !is_seen[r] {
                    is_seen[r] = true;
                    seen.push(r);
                }
                weight_to[r] += w;
            }
        }
        let (mut best, mut best_gain) = (refined[i], 0.0);
        for &r in &seen {
            if r == refined[i] || external[r] < scale * ref_total[r] * (comm_total[c] - ref_total[r]) {
                continue;
            }
            let gain = weight_to[r] - scale * k[i] * ref_total[r];
            if gain > best_gain {
                (best, best_gain) = (r, gain);
            }
        }
        if best != refined[i] {
            let own = refined[i];
            ref_total[best] += k[i];
            ref_total[own] = 0.0;
            // R ∪ {i}'s external weight: both externals less the weight between them, twice.
            external[best] = external[best] + external[own] - 2.0 * weight_to[best];
            external[own] = 0.0;
            refined[i] = best;
            singleton[i] = false;
            // Members of the target are no longer singletons either.
            for (j, _) in g.neighbours(i) {
                if refined[j] == best {
                    singleton[j] = false;
                }
            }
        }
        for &r in &seen {
            weight_to[r] = 0.0;
            is_seen[r] = false;
        }
        seen.clear();
    }
    renumber(&refined)
}

/// Modularity Q of `membership` at resolution γ (for tests and reports).
pub fn modularity(graph: &Graph, membership: &[u32], resolution: f64) -> f64 {
    let k = graph.strengths();
    let two_m: f64 = k.iter().sum();
    let n_c = membership.iter().max().map_or(0, |m| *m as usize + 1);
    let mut internal = vec![0f64; n_c];
    let mut total = vec![0f64; n_c];
    for i in 0..graph.n_nodes() {
        total[membership[i] as usize] += k[i];
        for (j, w) in graph.neighbours(i) {
            if membership[j] == membership[i] {
                internal[membership[i] as usize] += w;
            }
        }
    }
    internal.iter().zip(&total).map(|(a, t)| a - resolution * t * t / two_m).sum::<f64>() / two_m
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// Undirected edges (i, j, w) into a graph (both directions).
    fn graph(n: usize, edges: &[(usize, usize, f64)]) -> Graph {
        let mut rows = vec![Vec::new(); n];
        for &(i, j, w) in edges {
            rows[i].push((j as u32, w));
            if i != j {
                rows[j].push((i as u32, w));
            }
        }
        let mut g = Graph { indptr: vec![0], indices: Vec::new(), weights: Vec::new() };
        for mut r in rows {
            r.sort_by_key(|e| e.0);
            for (j, w) in r {
                g.indices.push(j);
                g.weights.push(w);
            }
            g.indptr.push(g.indices.len());
        }
        g
    }

    /// `blocks` planted cliques of `size` nodes, joined by a sparse random background.
    fn planted(blocks: usize, size: usize, seed: u64) -> (Graph, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = blocks * size;
        let mut edges = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                let same = i / size == j / size;
                let p = if same { 0.5 } else { 0.01 };
                if rng.random::<f64>() < p {
                    edges.push((i, j, 1.0));
                }
            }
        }
        (graph(n, &edges), (0..n).map(|i| i / size).collect())
    }

    fn opts(resolution: f64, seed: u64) -> LeidenOptions {
        LeidenOptions { resolution, n_iterations: 2, seed }
    }

    #[test]
    fn finds_planted_communities() {
        let (g, truth) = planted(6, 40, 3);
        let m = leiden(&g, &opts(1.0, 0)).unwrap();
        // Same partition as the truth, up to names.
        for i in 0..truth.len() {
            for j in 0..truth.len() {
                assert_eq!(truth[i] == truth[j], m[i] == m[j], "nodes {i} and {j}");
            }
        }
        assert!(modularity(&g, &m, 1.0) > 0.6);
    }

    #[test]
    fn two_cliques_joined_by_one_edge() {
        let mut edges = Vec::new();
        for base in [0, 5] {
            for i in 0..5 {
                for j in i + 1..5 {
                    edges.push((base + i, base + j, 1.0));
                }
            }
        }
        edges.push((4, 5, 1.0));
        let m = leiden(&graph(10, &edges), &opts(1.0, 1)).unwrap();
        assert_eq!(m, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn higher_resolution_gives_more_clusters_and_is_seeded() {
        let (g, _) = planted(4, 50, 5);
        let count = |m: &[u32]| *m.iter().max().unwrap() as usize + 1;
        let low = leiden(&g, &opts(0.5, 2)).unwrap();
        let high = leiden(&g, &opts(8.0, 2)).unwrap();
        assert!(count(&high) > count(&low), "{} vs {}", count(&high), count(&low));
        assert_eq!(high, leiden(&g, &opts(8.0, 2)).unwrap());
        // Every cluster is connected (Leiden's guarantee): each node has a neighbour in its cluster
        // unless the cluster is that node alone.
        for i in 0..g.n_nodes() {
            let alone = high.iter().filter(|&&c| c == high[i]).count() == 1;
            assert!(alone || g.neighbours(i).any(|(j, _)| j != i && high[j] == high[i]), "node {i}");
        }
    }

    #[test]
    fn improves_on_singletons_and_one_cluster() {
        let (g, _) = planted(5, 30, 9);
        for gamma in [0.5, 1.0, 3.0] {
            let m = leiden(&g, &opts(gamma, 4)).unwrap();
            let singletons: Vec<u32> = (0..g.n_nodes() as u32).collect();
            let one = vec![0u32; g.n_nodes()];
            let q = modularity(&g, &m, gamma);
            assert!(q >= modularity(&g, &singletons, gamma) && q >= modularity(&g, &one, gamma), "γ = {gamma}");
        }
    }

    #[test]
    fn bad_input_is_an_error_and_edgeless_graphs_are_singletons() {
        let g = graph(3, &[(0, 1, f64::NAN)]);
        assert!(leiden(&g, &opts(1.0, 0)).is_err());
        assert!(leiden(&graph(2, &[]), &opts(0.0, 0)).is_err());
        assert_eq!(leiden(&graph(3, &[]), &opts(1.0, 0)).unwrap(), vec![0, 1, 2]);
    }
}
