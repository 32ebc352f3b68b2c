//! The in-memory AnnData subset sclabel works with: X as CSR, obs columns, obs/var names, `.raw`.
use crate::data::matrix::CsrMatrix;
use crate::data::normalize::ValueStats;
use crate::error::{Result, SclabelError};

/// One obs column. Categoricals keep anndata's codes + categories form (code −1 = missing).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Categorical { codes: Vec<i32>, categories: Vec<String> },
    Strings(Vec<String>),
    Numeric(Vec<f64>),
    Bool(Vec<bool>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Categorical { codes, .. } => codes.len(),
            Column::Strings(v) => v.len(),
            Column::Numeric(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Column {
        match self {
            Column::Categorical { codes, categories } => {
                Column::Categorical { codes: rows.iter().map(|&r| codes[r]).collect(), categories: categories.clone() }
            }
            Column::Strings(v) => Column::Strings(rows.iter().map(|&r| v[r].clone()).collect()),
            Column::Numeric(v) => Column::Numeric(rows.iter().map(|&r| v[r]).collect()),
            Column::Bool(v) => Column::Bool(rows.iter().map(|&r| v[r]).collect()),
        }
    }

    /// Every value as a string (`None` where missing), whatever the column's type.
    pub fn to_strings(&self) -> Vec<Option<String>> {
        match self {
            Column::Categorical { codes, categories } => codes.iter().map(|&c| if c < 0 { None } else { categories.get(c as usize).cloned() }).collect(),
            Column::Strings(v) => v.iter().map(|s| Some(s.clone())).collect(),
            Column::Numeric(v) => v.iter().map(|x| if x.is_nan() { None } else { Some(format_number(*x)) }).collect(),
            Column::Bool(v) => v.iter().map(|b| Some(if *b { "True" } else { "False" }.to_string())).collect(),
        }
    }
}

fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Strings with missing entries (`missing[i]` true) as a categorical, categories in order of first
/// appearance: how the readers keep anndata's nullable string (and boolean) columns.
pub fn categorical_from_strings(values: &[String], missing: &[bool]) -> Column {
    let mut categories: Vec<String> = Vec::new();
    let mut lookup: std::collections::HashMap<&str, i32> = std::collections::HashMap::new();
    let mut codes = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        if missing.get(i).copied().unwrap_or(false) {
            codes.push(-1);
            continue;
        }
        let code = *lookup.entry(v.as_str()).or_insert_with(|| {
            categories.push(v.clone());
            (categories.len() - 1) as i32
        });
        codes.push(code);
    }
    Column::Categorical { codes, categories }
}

/// Ordered obs table: (name, column) pairs, all of length n_obs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObsTable {
    pub columns: Vec<(String, Column)>,
}

impl ObsTable {
    pub fn get(&self, name: &str) -> Result<&Column> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .ok_or_else(|| SclabelError::ColumnNotFound { column: name.to_string(), available: self.names().join(", ") })
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// `.raw`: another matrix over the same cells with its own gene list.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub x: CsrMatrix,
    pub var_names: Vec<String>,
    /// As `AnnData::x_stats`, for a `.raw` loaded with only some of its genes.
    pub x_stats: Option<ValueStats>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnnData {
    pub x: CsrMatrix,
    pub obs: ObsTable,
    pub obs_names: Vec<String>,
    pub var_names: Vec<String>,
    /// Other identifiers of X's genes: var's string columns with a value for every gene (e.g.
    /// CELLxGENE's `feature_name` symbols beside Ensembl IDs in the index), by column name.
    pub var_ids: Vec<(String, Vec<String>)>,
    /// When X holds only some of its file's genes (loaded with a gene selection): what
    /// normalisation needs from the whole rows — the scale and each cell's totals over all genes —
    /// so every result equals that of the full matrix (see [`AnnData::value_stats`]).
    pub x_stats: Option<ValueStats>,
    pub raw: Option<Raw>,
}

impl AnnData {
    pub fn n_obs(&self) -> usize {
        self.x.n_rows
    }
    pub fn n_vars(&self) -> usize {
        self.x.n_cols
    }

    /// Checks that every part agrees on n_obs / n_vars.
    pub fn validate(&self) -> Result<()> {
        let (n, g) = (self.x.n_rows, self.x.n_cols);
        if self.obs_names.len() != n {
            return Err(SclabelError::shape(format!("{} obs names for {n} cells", self.obs_names.len())));
        }
        if self.var_names.len() != g {
            return Err(SclabelError::shape(format!("{} var names for {g} genes", self.var_names.len())));
        }
        if let Some(s) = self.x_stats.as_ref().filter(|s| s.sums.len() != n) {
            return Err(SclabelError::shape(format!("value statistics of {} cells for {n} cells", s.sums.len())));
        }
        if let Some((name, ids)) = self.var_ids.iter().find(|(_, ids)| ids.len() != g) {
            return Err(SclabelError::shape(format!("var column '{name}' has {} values for {g} genes", ids.len())));
        }
        for (name, c) in &self.obs.columns {
            if c.len() != n {
                return Err(SclabelError::shape(format!("obs column '{name}' has {} values for {n} cells", c.len())));
            }
        }
        if let Some(raw) = &self.raw {
            if raw.x.n_rows != n || raw.var_names.len() != raw.x.n_cols {
                return Err(SclabelError::shape(format!("raw is {} × {} with {} var names, X has {n} cells", raw.x.n_rows, raw.x.n_cols, raw.var_names.len())));
            }
            if let Some(s) = raw.x_stats.as_ref().filter(|s| s.sums.len() != n) {
                return Err(SclabelError::shape(format!("raw value statistics of {} cells for {n} cells", s.sums.len())));
            }
        }
        Ok(())
    }

    /// A new data set with the cells at `rows` (in that order); `self` is left as it is.
    pub fn select_obs(&self, rows: &[usize]) -> Result<AnnData> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.n_obs()) {
            return Err(SclabelError::InvalidOption {
                option: "rows".into(),
                reason: format!("row {r} is out of range (the data set has {} cells)", self.n_obs()),
            });
        }
        Ok(AnnData {
            x: self.x.select_rows(rows),
            obs: ObsTable { columns: self.obs.columns.iter().map(|(n, c)| (n.clone(), c.select(rows))).collect() },
            obs_names: rows.iter().map(|&r| self.obs_names[r].clone()).collect(),
            var_names: self.var_names.clone(),
            var_ids: self.var_ids.clone(),
            x_stats: self.x_stats.as_ref().map(|s| s.select_rows(rows)),
            raw: self.raw.as_ref().map(|raw| Raw {
                x: raw.x.select_rows(rows),
                var_names: raw.var_names.clone(),
                x_stats: raw.x_stats.as_ref().map(|s| s.select_rows(rows)),
            }),
        })
    }

    /// A new data set with obs column `name` set to `values` (added, or replaced in place).
    pub fn with_obs_column(&self, name: &str, column: Column) -> Result<AnnData> {
        if column.len() != self.n_obs() {
            return Err(SclabelError::shape(format!("{} values for obs column '{name}', the data set has {} cells", column.len(), self.n_obs())));
        }
        let mut out = self.clone();
        match out.obs.columns.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = column,
            None => out.obs.columns.push((name.to_string(), column)),
        }
        Ok(out)
    }

    /// X or `.raw` (its matrix and gene names), borrowed.
    pub fn matrix(&self, use_raw: bool) -> Result<(&CsrMatrix, &Vec<String>)> {
        if !use_raw {
            return Ok((&self.x, &self.var_names));
        }
        let raw = self.raw.as_ref().ok_or_else(|| SclabelError::InvalidOption { option: "use_raw".into(), reason: "the data set has no .raw".into() })?;
        Ok((&raw.x, &raw.var_names))
    }

    /// The same cells with `.raw` as X (for files whose X is scaled but raw is log-normalised).
    pub fn use_raw(&self) -> Result<AnnData> {
        let raw = self.raw.as_ref().ok_or_else(|| SclabelError::InvalidOption { option: "use_raw".into(), reason: "the data set has no .raw".into() })?;
        Ok(AnnData {
            x: raw.x.clone(),
            obs: self.obs.clone(),
            obs_names: self.obs_names.clone(),
            var_names: raw.var_names.clone(),
            var_ids: Vec::new(),
            x_stats: raw.x_stats.clone(),
            raw: None,
        })
    }

    /// The same data set with var column `column` as the gene names (scanpy's `gene_symbols`):
    /// the index becomes an identifier column of its own (`var_index`). `.raw` keeps its names.
    pub fn with_var_names_from(&self, column: &str) -> Result<AnnData> {
        let (names, ids) = swap_var_names(&self.var_names, &self.var_ids, column)?;
        Ok(AnnData { var_names: names, var_ids: ids, ..self.clone() })
    }
}

/// Gene identifiers as gene matching takes them: ("var index", the names), then each other column.
pub fn gene_ids_of<'a>(names: &'a [String], ids: &'a [(String, Vec<String>)]) -> Vec<(&'a str, &'a [String])> {
    std::iter::once(("var index", names)).chain(ids.iter().map(|(n, v)| (n.as_str(), v.as_slice()))).collect()
}

/// Name under which the original var index is kept when another column becomes the gene names.
pub const VAR_INDEX: &str = "var_index";

/// `column` of `ids` as the names, the old names kept as `VAR_INDEX`; an error lists the columns.
pub fn swap_var_names(names: &[String], ids: &[(String, Vec<String>)], column: &str) -> Result<(Vec<String>, Vec<(String, Vec<String>)>)> {
    let Some(k) = ids.iter().position(|(n, _)| n == column) else {
        let available: Vec<&str> = ids.iter().map(|(n, _)| n.as_str()).collect();
        return Err(SclabelError::InvalidOption {
            option: "var_names".into(),
            reason: format!(
                "var has no string column '{column}' with a value for every gene (string columns: {})",
                if available.is_empty() { "none".to_string() } else { available.join(", ") }
            ),
        });
    };
    let mut ids = ids.to_vec();
    let (_, new_names) = ids.remove(k);
    ids.insert(0, (VAR_INDEX.to_string(), names.to_vec()));
    Ok((new_names, ids))
}

impl AnnData {
    /// What normalising X or `.raw` needs from the whole rows: kept from loading when X is a gene
    /// selection, computed from the matrix otherwise.
    pub fn value_stats(&self, use_raw: bool) -> Result<std::borrow::Cow<'_, ValueStats>> {
        let (x, _) = self.matrix(use_raw)?;
        let kept = if use_raw { self.raw.as_ref().and_then(|r| r.x_stats.as_ref()) } else { self.x_stats.as_ref() };
        Ok(match kept {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(ValueStats::of(x)),
        })
    }

    /// X's gene identifiers: the names, then every other identifier column.
    pub fn gene_ids(&self) -> Vec<(&str, &[String])> {
        gene_ids_of(&self.var_names, &self.var_ids)
    }
}
