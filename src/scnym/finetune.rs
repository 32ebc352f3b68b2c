//! Fine-tuning starts from a trained model (an atlas's) re-indexed to the new training data: the
//! first layer's input columns are matched to the new gene list by name, the output layer's rows to
//! the new class list by name, everything else (hidden layers, batch-norm parameters and running
//! statistics) is carried over as it is. Genes the model never saw start with zero weight (they add
//! nothing until training gives them some); classes it never saw start from PyTorch's default
//! initialisation. The domain adversary is always new: the domains are the new data's.
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SclabelError};
use crate::scnym::bundle::{HostTensors, ScnymModel};
use crate::scnym::model::ArchSpec;

/// Pretrained weights re-indexed to a training set's genes and classes, in PyTorch layout.
#[derive(Debug, Clone)]
pub struct Pretrained {
    pub arch: ArchSpec,
    pub host: HostTensors,
    pub genes: Vec<String>,
    pub classes: Vec<String>,
    pub report: InitReport,
}

/// What was carried over from the pretrained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitReport {
    /// Training genes the pretrained model has (their first-layer weights are kept).
    pub genes_carried: usize,
    /// Training genes new to the model (zero initial weight).
    pub genes_new: usize,
    /// Model genes absent from the training data (their weights are dropped).
    pub genes_dropped: usize,
    pub classes_carried: usize,
    /// Training classes new to the model (freshly initialised output rows).
    pub classes_new: Vec<String>,
    /// Model classes with no training cells (their output rows are dropped).
    pub classes_dropped: Vec<String>,
}

/// `model`'s weights for training data with `genes` and `classes` (see the module comment).
pub async fn pretrained_for(model: &ScnymModel, genes: &[String], classes: &[String], seed: u64) -> Result<Pretrained> {
    let gene_at: HashMap<&str, usize> = model.genes.iter().enumerate().map(|(i, g)| (g.as_str(), i)).collect();
    let class_at: HashMap<&str, usize> = model.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let gene_src: Vec<Option<usize>> = genes.iter().map(|g| gene_at.get(g.as_str()).copied()).collect();
    let class_src: Vec<Option<usize>> = classes.iter().map(|c| class_at.get(c.as_str()).copied()).collect();
    let genes_carried = gene_src.iter().flatten().count();
    let classes_carried = class_src.iter().flatten().count();
    if genes_carried == 0 {
        return Err(SclabelError::genes("the pretrained model shares no genes with the training data: fine-tuning would start from nothing"));
    }
    if classes_carried == 0 {
        return Err(SclabelError::labels(format!(
            "none of the training labels ({}) is a class of the pretrained model ({}): are the label vocabularies the same?",
            preview(classes),
            preview(&model.classes)
        )));
    }
    let arch = ArchSpec { n_genes: genes.len(), n_classes: classes.len(), ..model.arch.clone() };
    let (g_old, c_old) = (model.arch.n_genes, model.arch.n_classes);
    let mut host = HostTensors::new();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xF17E);
    for (name, shape, v) in model.host_tensors().await? {
        let (shape, v) = match name.as_str() {
            // [out, in]: input columns by gene name, zero for new genes.
            "embed.0.weight" => {
                let out = shape[0];
                let mut w = vec![0f32; out * genes.len()];
                for r in 0..out {
                    for (j, src) in gene_src.iter().enumerate() {
                        if let Some(s) = src {
                            w[r * genes.len() + j] = v[r * g_old + s];
                        }
                    }
                }
                (vec![out, genes.len()], w)
            }
            // Output rows by class name; new classes as PyTorch initialises a Linear.
            "classif.0.weight" | "classif.0.bias" => {
                let width = if shape.len() == 2 { shape[1] } else { 1 };
                let bound = 1.0 / (model.arch.n_hidden as f32).sqrt();
                let mut w = Vec::with_capacity(classes.len() * width);
                for src in &class_src {
                    match src {
                        Some(s) => w.extend_from_slice(&v[s * width..(s + 1) * width]),
                        None => w.extend((0..width).map(|_| rng.random_range(-bound..bound))),
                    }
                }
                debug_assert_eq!(v.len(), c_old * width);
                let shape = if shape.len() == 2 { vec![classes.len(), width] } else { vec![classes.len()] };
                (shape, w)
            }
            _ => (shape, v),
        };
        host.insert(name, (shape, v));
    }
    let report = InitReport {
        genes_carried,
        genes_new: genes.len() - genes_carried,
        genes_dropped: g_old - genes_carried,
        classes_carried,
        classes_new: classes.iter().zip(&class_src).filter(|(_, s)| s.is_none()).map(|(c, _)| c.clone()).collect(),
        classes_dropped: model.classes.iter().filter(|c| !classes.contains(c)).cloned().collect(),
    };
    Ok(Pretrained { arch, host, genes: genes.to_vec(), classes: classes.to_vec(), report })
}

fn preview(v: &[String]) -> String {
    let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > 5 {
        s.push_str(", …");
    }
    s
}

impl InitReport {
    /// Warnings a user should see (nothing when the model fits the data exactly).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let total = self.genes_carried + self.genes_new;
        if self.genes_new > 0 || self.genes_dropped > 0 {
            w.push(format!(
                "fine-tuning: {} of the {} training genes have pretrained weights; {} are new (start at zero), {} of the model's genes are not in the data",
                self.genes_carried, total, self.genes_new, self.genes_dropped
            ));
        }
        if !self.classes_new.is_empty() {
            w.push(format!("fine-tuning: classes new to the pretrained model start untrained: {}", preview(&self.classes_new)));
        }
        if !self.classes_dropped.is_empty() {
            w.push(format!("fine-tuning: the pretrained model's classes with no training cells are dropped: {}", preview(&self.classes_dropped)));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scnym::config::ModelKwargs;
    use crate::scnym::model::{BnState, ScnymNet};

    #[test]
    fn reindexes_genes_and_classes_by_name() {
        let device = crate::backend::cpu(crate::backend::BackendRequest::Cpu, "test").unwrap().device;
        let arch = ArchSpec::new(4, 3, &ModelKwargs { n_hidden: 8, n_hidden_init: 8, ..Default::default() });
        let model = ScnymModel {
            net: ScnymNet::init(&arch, &device, 1),
            bn: BnState::init(&arch, &device),
            arch,
            genes: ["A", "B", "C", "D"].map(String::from).to_vec(),
            classes: ["x", "y", "z"].map(String::from).to_vec(),
            input: Default::default(),
            config: None,
            metrics: None,
            provenance: Default::default(),
        };
        let old: HashMap<String, (Vec<usize>, Vec<f32>)> = crate::block_on(model.host_tensors()).unwrap().into_iter().map(|(n, s, v)| (n, (s, v))).collect();
        let genes = ["C", "E", "A"].map(String::from).to_vec();
        let classes = ["z", "w", "x"].map(String::from).to_vec();
        let p = crate::block_on(pretrained_for(&model, &genes, &classes, 0)).unwrap();
        let (s, w) = &p.host["embed.0.weight"];
        assert_eq!(s, &vec![8, 3]);
        let (_, w0) = &old["embed.0.weight"];
        for r in 0..8 {
            assert_eq!(w[r * 3], w0[r * 4 + 2], "C is old column 2");
            assert_eq!(w[r * 3 + 1], 0.0, "E is new");
            assert_eq!(w[r * 3 + 2], w0[r * 4], "A is old column 0");
        }
        let (s, o) = &p.host["classif.0.weight"];
        assert_eq!(s, &vec![3, 8]);
        let (_, o0) = &old["classif.0.weight"];
        assert_eq!(&o[..8], &o0[16..24], "z is old row 2");
        assert_eq!(&o[16..24], &o0[..8], "x is old row 0");
        assert!(o[8..16].iter().all(|v| v.abs() <= 1.0 / 8f32.sqrt()) && o[8..16] != o0[8..16]);
        assert_eq!(p.host["embed.1.running_mean"], old["embed.1.running_mean"]);
        assert_eq!((p.report.genes_carried, p.report.genes_new, p.report.genes_dropped), (2, 1, 2));
        assert_eq!((p.report.classes_new.clone(), p.report.classes_dropped.clone()), (vec!["w".to_string()], vec!["y".to_string()]));
        assert_eq!(p.report.warnings().len(), 3);
        // The re-indexed weights build a model of the new shape.
        let m = ScnymModel::from_host_tensors(p.arch.clone(), &p.host, genes.clone(), classes.clone(), &device).unwrap();
        assert_eq!((m.arch.n_genes, m.arch.n_classes), (3, 3));
        assert!(crate::block_on(pretrained_for(&model, &["Q".to_string()], &classes, 0)).is_err());
        assert!(crate::block_on(pretrained_for(&model, &genes, &["q".to_string()], 0)).is_err());
    }
}
