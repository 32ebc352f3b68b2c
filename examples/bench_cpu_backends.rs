//! Compares burn's two CPU backends (flex vs the deprecated ndarray) on the plain MLP's training
//! step, interleaved in one process so machine noise hits both alike. Prints ms per step and the
//! ratio. Run: `cargo run --example bench_cpu_backends --features ndarray [-- genes batch steps]`
use std::time::Instant;

use sclabel::backend::{cpu_of, Backend, BackendRequest};
use sclabel::block_on;
use sclabel::data::synthetic::{synthetic_counts, SyntheticSpec};
use sclabel::train::classifier::{train_mlp, TrainOptions};
use sclabel::train::progress::Silent;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (genes, batch, steps) = (args.first().copied().unwrap_or(2000), args.get(1).copied().unwrap_or(256), args.get(2).copied().unwrap_or(20));
    let data = synthetic_counts(&SyntheticSpec { n_cells: batch * steps, n_genes: genes, n_classes: 10, markers_per_class: 20, ..Default::default() });
    let labels: Vec<i32> = (0..data.n_obs()).map(|i| (i % 10) as i32).collect();
    let rows: Vec<usize> = (0..data.n_obs()).collect();
    let options = TrainOptions { n_epochs: 1, batch_size: batch, ..TrainOptions::default() };
    println!("MLP {genes} → {} → {} → 10, batch {batch}, {steps} steps per epoch (SGD, balanced sampling)", genes / 2, genes / 4);
    let mut times = [(Backend::Flex, Vec::new()), (Backend::Ndarray, Vec::new())];
    for round in 0..4 {
        for (backend, t) in times.iter_mut() {
            let device = cpu_of(*backend, BackendRequest::Cpu, "bench").expect("backend compiled in");
            let start = Instant::now();
            block_on(train_mlp(&data.x, &labels, 10, &rows, &options, None, &device.device, &mut Silent)).unwrap();
            let ms = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
            if round > 0 {
                t.push(ms); // round 0 warms up
            }
        }
    }
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (backend, t) in &times {
        println!("{backend:?}: {:.1} ms/step (median of {} epochs)", median(t), t.len());
    }
    println!("ndarray / flex time ratio: {:.2}", median(&times[1].1) / median(&times[0].1));
}
