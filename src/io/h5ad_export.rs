//! Adds obs columns and obsm matrices to a user's own `.h5ad` and leaves everything else as it was.
//!
//! **Appended** (files h5py wrote: what anndata, scanpy and most tools save): the file's bytes are
//! kept and the additions go after its last byte, with new obs / obsm / root groups that link the
//! existing objects and one run of the superblock changed to reach them
//! ([`crate::io::hdf5_append`], [`annotate_h5ad_appending`]). Every object, attribute and byte of
//! the source is as it was, booleans and storage included; memory is the additions. In the
//! browser the output is a `Blob` of slices of the user's `File` plus the tail; natively a copy the
//! file system made is patched and extended.
//!
//! **Rewritten** (other files: latest-format superblocks or groups, e.g. hdf5-pure's own, and the
//! anndata ≤ 0.6 layout): hdf5-pure's in-place editor (`File::open_rw`) and its `repack` need a
//! filesystem path, which wasm has not, so the file is rebuilt from bytes to bytes on the crate's
//! public API: every group, dataset and attribute of the source is read and written again with
//! `FileBuilder`, the additions are written beside them in anndata's (≥ 0.8) encoding, and the
//! result is re-opened and checked against the source before it is returned. What follows is
//! about this rewrite.
//!
//! **Preserved**: the userblock; the group tree; every dataset's datatype (byte order, fixed-length strings,
//! compound, enumeration and array types included), shape, element bytes, chunk shape, maximum
//! shape and filters (deflate at its level, shuffle, fletcher32, LZF); variable-length strings as
//! variable-length strings of the same charset; every attribute's name, value and datatype, except:
//!
//! **Normalised** (same values for h5py and anndata; hdf5-pure's public API can't write the original):
//! - h5py booleans as attributes (`enum {FALSE, TRUE}` over int8, e.g. a categorical's `ordered`)
//!   become int8 0 / 1 (anndata reads them with `bool(...)`);
//! - null-terminated fixed-length string attributes become null-padded;
//! - storage: compact datasets become contiguous; chunks are compressed again (same filters, not the
//!   same bytes), in hdf5-pure's filter order, chunk index and optional flags; every element is
//!   written (no unallocated chunks, no user-defined fill value); a null variable-length string
//!   becomes an empty one; superblock and object-header versions are hdf5-pure's; a second hard
//!   link to an object becomes its own copy. hdf5-pure gives each variable-length string attribute
//!   its own 4 KiB global heap collection, so the file grows by ~4 KiB per such attribute (anndata
//!   writes two to four per element: +0.2–0.3 MB on the shared test files).
//!
//! **Converted** (the anndata ≤ 0.6 layout, e.g. scanpy's `pbmc68k_reduced.h5ad`, where obs, var
//! and obsm are one compound dataset each): when anything is added, obs and var are rewritten as
//! anndata ≥ 0.8 dataframe groups and obsm as a dict group, since modern anndata reads the old
//! tables but a column can't be added to one without rewriting it. The index field becomes `_index`
//! (its fixed-length string type kept); every other field a column of its own datatype and bytes:
//! fixed-length strings a `string-array`, numbers and booleans an `array`, and integer codes whose
//! categories sit in `uns/<field>_categories` a `categorical` (codes of the field's own integer
//! type, categories copied from uns, which then loses those entries, as anndata drops them on
//! reading); obsm's array fields become `n × k` arrays of their base type. Storage follows the old
//! table (its rows per chunk, and those of its filters named above). X, raw.X, raw.var, varm and the rest of uns stay as they are
//! (modern anndata reads those old forms itself). A converted element is checked by value rather
//! than object by object: the same bytes for every field, and this crate's reader reading the same
//! obs names, var names, obs columns, X and raw from source and output. Without additions the file
//! is rewritten as it is, in whatever layout.
//!
//! **Refused**, with an error naming the object and why (never a silently degraded file): object
//! references (e.g. anndata 0.7 categoricals) and region references, variable-length data other
//! than strings (or inside compound / array types), committed datatypes, virtual datasets, filters
//! other than the four above, attributes whose value hdf5-pure can't read or re-encode (enumerations
//! other than booleans, space-padded strings, numbers wider than 8 bytes …), strings that contain
//! NUL or U+FFFD (the public reader can't tell them from invalid UTF-8), and old compound tables
//! this conversion can't map: no fixed-length string index as the first field, a field of a type
//! with no column encoding (arrays, nested compounds, variable-length data …) or a name that can't
//! be a column, category codes outside the categories in uns.
//!
//! **Not checked** (hdf5-pure's public API does not show them): an attribute's rank (a 2-D
//! attribute comes back flattened), external and dangling links (dropped) and soft links (refused as
//! unreadable). anndata writes none of these.
//!
//! Memory: the source bytes, every dataset decoded, and the output are held at once (hdf5-pure's
//! builder stages all data until `finish`), so a few times the decoded size of the file; a
//! converted file is also read whole by this crate's reader, source and output both.
//! Natively, [`annotate_h5ad_copy`] instead works on a copy the file system makes: appended to
//! (files h5py wrote: 251 MB peak RSS for a 1.47 GB, 100k-cell file, of which 205 MB are its
//! 256-wide embedding twice) or edited in place by hdf5-pure (bounded for v2/v3 superblocks).
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use hdf5_pure::{
    AttrValue, CompoundMember, Dataset, DatasetBuilder, Datatype, DatatypeByteOrder, EnumTypeBuilder, File, FileBuilder, Filter, FinishedGroup, Group,
    GroupBuilder, Layout, Source, StringPadding, VlenStringReadOptions,
};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::data::anndata::Column;
use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use crate::io::h5ad::read_h5ad;
use crate::io::hdf5_append::{Appended, Element, Entry, FileLayout, Message, NotAppendable, Tail, Values};

/// Largest decoded size allowed per byte of file, as in the reader: a dataset that claims more is
/// corrupt, and refusing it keeps a forged shape from asking for terabytes.
const MAX_INFLATION: u64 = 2048;
const MIN_DECODED_BUDGET: u64 = 1 << 26;
/// Deeper group trees are refused: anndata writes a handful of levels (uns dicts a few more), and
/// a group linked inside itself (a hard-link cycle) would otherwise be walked without end.
const MAX_GROUP_DEPTH: usize = 64;

/// Objects a walk of a file may visit: a tree without shared links has at most one per 16 bytes (an
/// object header is at least that), so more means links that revisit groups (a cycle or a DAG
/// whose paths multiply).
fn max_visits(file_len: usize) -> usize {
    file_len / 16 + 1024
}

/// The depth and visit guard of a walk over a file's groups, as a reason to refuse it. The depth
/// is counted by the walk itself, not read from paths: a damaged file's link names may be empty,
/// which would keep a path from growing while the walk recurses.
struct WalkGuard {
    visits: std::cell::Cell<usize>,
    depth: std::cell::Cell<usize>,
    limit: usize,
}

/// One level of a walk; leaving it (dropping this) goes back up.
struct Level<'a>(&'a WalkGuard);

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.depth.set(self.0.depth.get().saturating_sub(1));
    }
}

impl WalkGuard {
    fn new(file_len: usize) -> Self {
        Self { visits: std::cell::Cell::new(0), depth: std::cell::Cell::new(0), limit: max_visits(file_len) }
    }

    /// Enters a group, counting `objects` more visits; the reason to stop, if any.
    fn enter(&self, objects: usize) -> std::result::Result<Level<'_>, String> {
        if self.depth.get() > MAX_GROUP_DEPTH {
            return Err(format!("groups nested more than {MAX_GROUP_DEPTH} deep: a group linked inside itself (a hard-link cycle)?"));
        }
        self.visits.set(self.visits.get() + objects);
        if self.visits.get() > self.limit {
            return Err(format!("more than {} objects reached through links: links that revisit groups (a cycle)?", self.limit));
        }
        self.depth.set(self.depth.get() + 1);
        Ok(Level(self))
    }
}

/// What to add to the file. Names already present in obs / obsm are replaced.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct H5adAdditions {
    /// New obs columns, in order (a JS object / JSON map keyed by column name).
    #[serde(default, deserialize_with = "ordered_map")]
    pub obs: Vec<(String, ObsValues)>,
    /// New obsm matrices (cells × `n_cols`, dense float32).
    #[serde(default, deserialize_with = "ordered_map")]
    pub obsm: Vec<(String, DenseF32)>,
}

/// One obs column, one value per cell.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ObsValues {
    /// Labels; `None` is missing (code -1). Categories are written sorted, as pandas orders them.
    Categorical(Vec<Option<String>>),
    /// Codes into `categories` (which keep their order); -1 is missing.
    CategoricalCodes {
        categories: Vec<String>,
        codes: Vec<i32>,
    },
    F32(Vec<f32>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

/// A dense row-major float32 matrix with `n_cols` columns and one row per cell.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseF32 {
    pub n_cols: usize,
    pub values: Vec<f32>,
}

/// A map deserialized in its own order into pairs (serde's maps would sort or hash the keys).
fn ordered_map<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Vec<(String, T)>, D::Error> {
    struct Pairs<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Pairs<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object keyed by name")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut out: Vec<(String, T)> = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, T>()? {
                if out.iter().any(|(n, _)| *n == k) {
                    return Err(serde::de::Error::custom(format!("'{k}' appears twice")));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs(std::marker::PhantomData))
}

/// Returns `bytes` (an `.h5ad` file) with `additions` written into obs / obsm and everything else
/// as it was (see the module docs for the exact guarantee). `file_name` is for messages only.
/// Files h5py wrote are appended to ([`annotate_h5ad_appending`]): memory is the file and the
/// additions. Others are rebuilt in memory ([`rewrite_h5ad`]).
pub fn annotate_h5ad(bytes: Vec<u8>, file_name: &str, additions: &H5adAdditions) -> Result<Vec<u8>> {
    if !hdf5_pure::is_hdf5_bytes(&bytes) {
        return Err(SclabelError::InvalidFile {
            file: file_name.to_string(),
            reason: format!("no HDF5 signature in its {} bytes (not an HDF5 file)", bytes.len()),
        });
    }
    let shared = Arc::new(bytes);
    let annotation = annotate_h5ad_appending(SharedBytes(Arc::clone(&shared)), file_name, additions)?;
    let mut bytes = Arc::try_unwrap(shared).unwrap_or_else(|a| a.as_ref().clone());
    match annotation {
        Annotation::Appended(appended) => {
            appended.apply_to(&mut bytes);
            Ok(bytes)
        }
        Annotation::Rewrite(_) => rewrite_h5ad(bytes, file_name, additions),
    }
}

/// What [`annotate_h5ad_appending`] made of a file.
#[derive(Debug)]
pub enum Annotation {
    /// The output: the source with the patches written over it, then the tail.
    Appended(Appended),
    /// The file can't be appended to (why); rewrite it ([`rewrite_h5ad`]) instead.
    Rewrite(NotAppendable),
}

/// `additions` for the `.h5ad` read through `source` (on demand: a browser `File`, a file handle),
/// as objects appended after its last byte and a patch of its superblock
/// ([`crate::io::hdf5_append`]), checked before they are returned: the output, read through an
/// overlay of the source, has every object of the source as it was (all but the additions and
/// obs's `column-order`) and the added obs columns read back as written. Memory is the additions
/// and the file's metadata. Files h5py did not write (latest-format superblocks or groups, anndata
/// ≤ 0.6 tables) are [`Annotation::Rewrite`].
pub fn annotate_h5ad_appending<S: Source + Send + Sync + 'static>(source: S, file_name: &str, additions: &H5adAdditions) -> Result<Annotation> {
    let source = Arc::new(source);
    let len = source.len();
    let file = File::from_source(Shared(Arc::clone(&source)))
        .map_err(|e| SclabelError::InvalidFile { file: file_name.to_string(), reason: format!("cannot open as HDF5: {e}") })?;
    let src = Original::from_file(file, file_name, usize::try_from(len).unwrap_or(usize::MAX))?;
    let plan = src.plan(additions)?;
    let Appended { patches, tail } = match append_plan(&*source, &plan) {
        Ok(appended) => appended,
        Err(why) => return Ok(Annotation::Rewrite(why)),
    };
    let tail = Arc::new(tail);
    {
        let overlay = Overlay { base: Shared(Arc::clone(&source)), len, patches: patches.clone(), tail: Arc::clone(&tail) };
        let out = File::from_source(overlay).map_err(|e| src.unsupported("/", format!("the annotated file does not open: {e}")))?;
        compare(&src.file, &out, &plan.changes(), false)
            .and_then(|()| check_added_obs(&out, &plan))
            .map_err(|(path, reason)| src.unsupported(&path, format!("the appended objects do not read back as written: {reason}")))?;
    }
    Ok(Annotation::Appended(Appended { patches, tail: Arc::try_unwrap(tail).unwrap_or_else(|a| a.as_ref().clone()) }))
}

/// The plan's additions as objects appended to `raw`, or why the file can't take them that way.
fn append_plan<S: Source + ?Sized>(raw: &S, plan: &Plan) -> std::result::Result<Appended, NotAppendable> {
    if plan.converts() {
        return Err("an anndata ≤ 0.6 file, whose tables are converted".into());
    }
    if plan.obs.is_empty() && plan.obsm.is_empty() {
        return Err("nothing to add".into());
    }
    // A version-1 attribute message holds at most 64 KiB: 16 bytes per column name.
    if plan.column_order.len() > 4000 {
        return Err(format!("{} obs columns, more than one attribute message lists", plan.column_order.len()));
    }
    let layout = FileLayout::read(raw)?;
    let root = layout.read_group(raw, layout.root_header())?;
    let len = raw.len();
    let mut tail = Tail::new(&layout, len);
    let mut root_entries = root.entries;
    let linked = |entries: &[Entry], name: &str| entries.iter().find(|e| e.name == name).map(Entry::header);
    let relink = |entries: &mut Vec<Entry>, entry: Entry| {
        entries.retain(|e| e.name != entry.name);
        entries.push(entry);
    };
    if !plan.obs.is_empty() {
        let obs = layout.read_group(raw, linked(&root_entries, "obs").ok_or("no obs group linked from the root")?)?;
        let mut entries = obs.entries;
        entries.retain(|e| !plan.obs.iter().any(|(n, _)| *n == e.name));
        for (name, col) in &plan.obs {
            let entry = append_column(&mut tail, name, col);
            entries.push(entry);
        }
        let mut messages = obs.messages;
        messages.retain(|m| m.attribute_name() != Some("column-order"));
        messages.push(tail.strings_attribute("column-order", &plan.column_order));
        let g = tail.group(entries, &messages);
        relink(&mut root_entries, Entry::group("obs", &g));
    }
    if !plan.obsm.is_empty() {
        let (mut entries, messages) = match linked(&root_entries, "obsm") {
            Some(at) => {
                let g = layout.read_group(raw, at)?;
                (g.entries, g.messages)
            }
            None => (Vec::new(), vec![tail.string_attribute("encoding-type", "dict"), tail.string_attribute("encoding-version", "0.1.0")]),
        };
        entries.retain(|e| !plan.obsm.iter().any(|(n, _)| *n == e.name));
        for (name, m) in &plan.obsm {
            let attrs = array_encoding(&mut tail, "array");
            let header = tail.dataset(Element::F32, &[plan.n_obs, m.n_cols as u64], Values::F32(&m.values), &attrs);
            entries.push(Entry::dataset(name, header));
        }
        let g = tail.group(entries, &messages);
        relink(&mut root_entries, Entry::group("obsm", &g));
    }
    let root_group = tail.group(root_entries, &root.messages);
    Ok(tail.finish(&root_group))
}

/// anndata's `encoding-type` / `encoding-version` of an array-like element.
fn array_encoding(tail: &mut Tail, kind: &str) -> Vec<Message> {
    vec![tail.string_attribute("encoding-type", kind), tail.string_attribute("encoding-version", "0.2.0")]
}

/// Appends one obs column in anndata's (≥ 0.8) encoding; the entry linking it.
fn append_column(tail: &mut Tail, name: &str, col: &NewColumn) -> Entry {
    match col {
        NewColumn::Categorical { categories, codes } => {
            let attrs = array_encoding(tail, "string-array");
            let cats = tail.dataset(Element::Str, &[categories.len() as u64], Values::Strings(categories), &attrs);
            // pandas' code width: int8 below 127 categories, int16 below 32767, else int32.
            let n = [codes.len() as u64];
            let attrs = array_encoding(tail, "array");
            let codes = match categories.len() {
                k if k < 127 => tail.dataset(Element::I8, &n, Values::Bytes(&codes.iter().map(|&c| c as i8 as u8).collect::<Vec<_>>()), &attrs),
                k if k < 32767 => {
                    let bytes: Vec<u8> = codes.iter().flat_map(|&c| (c as i16).to_le_bytes()).collect();
                    tail.dataset(Element::I16, &n, Values::Bytes(&bytes), &attrs)
                }
                _ => tail.dataset(Element::I32, &n, Values::I32(codes), &attrs),
            };
            let messages = vec![
                tail.string_attribute("encoding-type", "categorical"),
                tail.string_attribute("encoding-version", "0.2.0"),
                Tail::bool_attribute("ordered", false),
            ];
            let g = tail.group(vec![Entry::dataset("categories", cats), Entry::dataset("codes", codes)], &messages);
            Entry::group(name, &g)
        }
        NewColumn::Plain(plain) => {
            let attrs = array_encoding(tail, "array");
            let header = match plain {
                PlainColumn::F32(v) => tail.dataset(Element::F32, &[v.len() as u64], Values::F32(v), &attrs),
                PlainColumn::I32(v) => tail.dataset(Element::I32, &[v.len() as u64], Values::I32(v), &attrs),
                PlainColumn::Bool(v) => {
                    tail.dataset(Element::Bool, &[v.len() as u64], Values::Bytes(&v.iter().map(|&b| u8::from(b)).collect::<Vec<_>>()), &attrs)
                }
            };
            Entry::dataset(name, header)
        }
    }
}

/// [`annotate_h5ad`] for a file that can't be appended to: every object is read and written again
/// with hdf5-pure's `FileBuilder` (see the module docs), in memory.
pub fn rewrite_h5ad(bytes: Vec<u8>, file_name: &str, additions: &H5adAdditions) -> Result<Vec<u8>> {
    // The rebuilt file is made in memory beside the original: about its size again.
    crate::memory::reserve(
        &format!("the annotated copy of {file_name}"),
        bytes.len() as u64 + (bytes.len() as u64 >> 3),
        "export the predictions as CSV instead, or annotate the file natively (sclabel predict --annotate-h5ad)",
    )?;
    let src = Original::open(bytes, file_name)?;
    let plan = src.plan(additions)?;
    let mut out = FileBuilder::new();
    // The userblock (bytes before the HDF5 superblock; Muon.jl writes an AnnData banner there).
    let userblock = src.file.as_bytes().get(..src.file.superblock().base_address.get() as usize).unwrap_or_default().to_vec();
    if !userblock.is_empty() {
        out.with_userblock(userblock.len() as u64).with_userblock_content(&userblock);
    }
    src.copy_group(&mut out, &src.file.root(), "", &plan)?;
    let bytes = out.finish().map_err(|e| src.unsupported("/", format!("hdf5-pure could not write the rebuilt file: {e}")))?;
    if bytes.get(..userblock.len()) != Some(&userblock[..]) {
        return Err(src.unsupported("/", "the userblock was not reproduced".into()));
    }
    // Re-open the result and compare it with the source, so whatever the writer could not
    // reproduce is an error rather than a quietly different file.
    let shared = Arc::new(bytes);
    {
        let written = File::from_source(SharedBytes(Arc::clone(&shared))).map_err(|e| src.unsupported("/", format!("the rebuilt file does not open: {e}")))?;
        compare(&src.file, &written, &plan.changes(), false)
            .and_then(|()| src.check_converted(&written, &plan))
            .map_err(|(path, reason)| src.unsupported(&path, format!("not reproduced faithfully: {reason}")))?;
    }
    if plan.converts() {
        src.check_reads_alike(&shared, &plan)?;
    }
    Ok(Arc::try_unwrap(shared).unwrap_or_else(|a| a.as_ref().clone()))
}

/// Natively, for files too big to rebuild in memory: `output` becomes a copy of `input` made by
/// the file system, and `additions` are written into the copy in place by hdf5-pure's editor, so
/// memory is the additions and the file's metadata, never its matrices. Checked as
/// [`annotate_h5ad`] checks: the same plan first, then every object of the copy compared with the
/// source's (datatypes, shapes, filters, attributes; all but the additions and obs's
/// `column-order`), and the added obs columns read back. The anndata ≤ 0.6 layout (obs as a
/// compound table, converted when anything is added) is refused with `unsupported_layout`:
/// [`annotate_h5ad`] converts it in memory. The input is never written (nor truncated through a
/// link); the copy is made under a temporary name and renamed to `output` once checked, so on any
/// error nothing is left and an existing `output` is as it was.
#[cfg(not(target_family = "wasm"))]
pub fn annotate_h5ad_copy(input: &std::path::Path, output: &std::path::Path, additions: &H5adAdditions) -> Result<()> {
    let name = input.display().to_string();
    let io = |p: &std::path::Path, e: std::io::Error| SclabelError::InvalidFile { file: p.display().to_string(), reason: e.to_string() };
    let open = |p: &std::path::Path| -> Result<(File, Arc<crate::io::h5ad::ReadSeekSource<std::io::BufReader<std::fs::File>>>, usize)> {
        let f = std::fs::File::open(p).map_err(|e| io(p, e))?;
        let len = f.metadata().map_err(|e| io(p, e))?.len() as usize;
        let source = crate::io::h5ad::ReadSeekSource::new(std::io::BufReader::new(f))
            .map_err(|e| SclabelError::InvalidFile { file: p.display().to_string(), reason: e.to_string() })?;
        let source = Arc::new(source);
        let file = File::from_source(Shared(Arc::clone(&source)))
            .map_err(|e| SclabelError::InvalidFile { file: p.display().to_string(), reason: format!("cannot open as HDF5: {e}") })?;
        Ok((file, source, len))
    };
    if same_file(input, output) {
        return Err(SclabelError::InvalidOption {
            option: "output".into(),
            reason: format!("{} is the input file, which is never changed: name another file", output.display()),
        });
    }
    let (file, source, len) = open(input)?;
    let src = Original::from_file(file, &name, len)?;
    let plan = src.plan(additions)?;
    if plan.converts() {
        return Err(src.unsupported(
            "obs",
            "an anndata ≤ 0.6 table, which is converted to a dataframe group when columns are added: that rewrites the file in memory".into(),
        ));
    }
    // Files h5py wrote take the additions appended (the copy patched and extended); others are
    // edited by hdf5-pure (bounded for v2/v3 superblocks).
    let appended = append_plan(&*source, &plan).ok();
    drop(source);
    // Written beside the output under a temporary name and renamed over it when checked: an
    // existing output is replaced, never truncated (it may be another link to the input), and a
    // failed copy or edit leaves nothing behind.
    let file_name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "annotated.h5ad".into());
    let temp = output.with_file_name(format!(".{file_name}.sclabel-{}.tmp", std::process::id()));
    let written = std::fs::copy(input, &temp)
        .and_then(|_| {
            // A copy of a read-only input is read-only too; the editor needs to write it.
            let mut permissions = std::fs::metadata(&temp)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(&temp, permissions)
        })
        .map_err(|e| io(output, e))
        .and_then(|()| match &appended {
            Some(a) => write_appended(&temp, a, len as u64).map_err(|e| io(output, e)),
            None => write_in_place(&temp, &plan, &src),
        })
        .and_then(|()| {
            let (copy, _, _) = open(&temp)?;
            compare(&src.file, &copy, &plan.changes(), false)
                .map_err(|(path, reason)| src.unsupported(&path, format!("the annotated copy differs from the file: {reason}")))?;
            check_added_obs(&copy, &plan).map_err(|(path, reason)| src.unsupported(&path, format!("the annotated copy does not read back: {reason}")))
        })
        .and_then(|()| std::fs::rename(&temp, output).map_err(|e| io(output, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Writes an append's patches over the copy at `path` (of a `len`-byte file) and its tail after.
#[cfg(not(target_family = "wasm"))]
fn write_appended(path: &std::path::Path, appended: &Appended, len: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    if f.metadata()?.len() != len {
        return Err(std::io::Error::other("the copy's size differs from the file's (was the file changed while it was read?)"));
    }
    for (at, bytes) in &appended.patches {
        f.seek(SeekFrom::Start(*at))?;
        f.write_all(bytes)?;
    }
    f.seek(SeekFrom::Start(len))?;
    f.write_all(&appended.tail)?;
    f.sync_all()
}

/// Whether two paths name the same file (also through a hard link or a symbolic one).
#[cfg(not(target_family = "wasm"))]
pub fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The additions of `plan` written into the file at `path` (a copy) by hdf5-pure's editor.
#[cfg(not(target_family = "wasm"))]
fn write_in_place(path: &std::path::Path, plan: &Plan, src: &Original) -> Result<()> {
    let h5 = |what: &str, e: hdf5_pure::Error| match e {
        hdf5_pure::Error::Io(e) => SclabelError::InvalidFile { file: path.display().to_string(), reason: format!("while annotating a copy: {e}") },
        e => src.unsupported(what, format!("hdf5-pure could not edit the copy: {e}")),
    };
    let file = File::open_rw(path).map_err(|e| h5("/", e))?;
    let root = file.root();
    let children = |g: &Group| -> Result<Vec<String>> {
        let mut names = g.groups().map_err(|e| h5("/", e))?;
        names.extend(g.datasets().map_err(|e| h5("/", e))?);
        Ok(names)
    };
    if !plan.obs.is_empty() {
        let obs = root.group("obs").map_err(|e| h5("obs", e))?;
        let present = children(&obs)?;
        for (name, col) in &plan.obs {
            let at = format!("obs/{name}");
            if present.iter().any(|c| c == name) {
                obs.delete(name).map_err(|e| h5(&at, e))?;
            }
            match col {
                NewColumn::Categorical { categories, codes } => obs
                    .create_group_with(name, |g| {
                        categorical_attrs(|k, v| {
                            g.set_attr(k, v);
                        });
                        g.create_dataset("categories", |db| write_categories(db, categories));
                        g.create_dataset("codes", |db| write_codes(db, codes, categories.len()));
                    })
                    .map(|_| ()),
                NewColumn::Plain(plain) => obs.create_dataset(name, |db| write_plain_column(db, plain)).map(|_| ()),
            }
            .map_err(|e| h5(&at, e))?;
        }
        obs.set_attr("column-order", AttrValue::VarLenStringArray(plan.column_order.clone())).map_err(|e| h5("obs", e))?;
    }
    if !plan.obsm.is_empty() {
        if !plan.has_obsm {
            root.create_group_with("obsm", |g| {
                g.set_attr("encoding-type", AttrValue::VarLenString("dict".into()));
                g.set_attr("encoding-version", AttrValue::VarLenString("0.1.0".into()));
            })
            .map_err(|e| h5("obsm", e))?;
        }
        let present = if plan.has_obsm { children(&root.group("obsm").map_err(|e| h5("obsm", e))?)? } else { Vec::new() };
        for (name, m) in &plan.obsm {
            let at = format!("obsm/{name}");
            if present.iter().any(|c| c == name) {
                root.delete(&at).map_err(|e| h5(&at, e))?;
            }
            root.create_dataset(&at, |db| write_dense(db, plan.n_obs, m)).map_err(|e| h5(&at, e))?;
        }
    }
    file.commit().map_err(|e| h5("/", e))
}

/// The added obs columns read back from `file` equal the plan's (codes, categories, values).
fn check_added_obs(file: &File, plan: &Plan) -> std::result::Result<(), Mismatch> {
    let err = |p: &str, e: String| (p.to_string(), e);
    for (name, col) in &plan.obs {
        let at = format!("obs/{name}");
        let same = match col {
            NewColumn::Categorical { categories, codes } => {
                let g = file.group(&at).map_err(|e| err(&at, e.to_string()))?;
                let cats = g.dataset("categories").and_then(|d| d.read_vlen_strings(VlenStringReadOptions::new())).map_err(|e| err(&at, e.to_string()))?;
                let read = g.dataset("codes").and_then(|d| d.read_i64()).map_err(|e| err(&at, e.to_string()))?;
                cats.iter().map(String::as_str).eq(categories.iter().copied()) && read.iter().map(|&c| c as i32).eq(codes.iter().copied())
            }
            // Bit for bit: NaN (pandas' missing value) equals itself here.
            NewColumn::Plain(PlainColumn::F32(v)) => {
                file.dataset(&at).and_then(|d| d.read_f32()).map_err(|e| err(&at, e.to_string()))?.iter().map(|x| x.to_bits()).eq(v.iter().map(|x| x.to_bits()))
            }
            NewColumn::Plain(PlainColumn::I32(v)) => file.dataset(&at).and_then(|d| d.read_i32()).map_err(|e| err(&at, e.to_string()))? == *v,
            NewColumn::Plain(PlainColumn::Bool(v)) => {
                file.dataset(&at).and_then(|d| d.read_u8()).map_err(|e| err(&at, e.to_string()))?.iter().map(|&b| b != 0).eq(v.iter().copied())
            }
        };
        if !same {
            return Err(err(&at, "its values differ from those written".into()));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ the source and its plan

/// The file being annotated.
struct Original {
    file: File,
    name: String,
    /// Most bytes any one dataset may decode to.
    budget: u64,
    len: usize,
    /// Bounds the walk over the file's groups.
    walk: WalkGuard,
}

/// A new obs column in the form it is written.
enum NewColumn<'a> {
    /// A group of categories and codes.
    Categorical { categories: Vec<&'a str>, codes: Vec<i32> },
    /// One dataset.
    Plain(PlainColumn<'a>),
}

enum PlainColumn<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
    Bool(&'a [bool]),
}

/// The checked additions and where they go.
struct Plan<'a> {
    n_obs: u64,
    obs: Vec<(&'a str, NewColumn<'a>)>,
    obsm: Vec<(&'a str, &'a DenseF32)>,
    /// obs's new `column-order`.
    column_order: Vec<String>,
    /// Whether the output gets an obsm group from the source (else one is created).
    has_obsm: bool,
    /// obs and var as anndata ≤ 0.6 compound tables, to be written as dataframe groups.
    legacy: Vec<LegacyFrame>,
    /// obsm as an anndata ≤ 0.6 compound table, to be written as a dict group.
    legacy_obsm: Option<LegacyObsm>,
    /// The `uns` datasets (names) the converted categoricals take their categories from; dropped.
    consumed: BTreeSet<String>,
}

/// What in the source the output does not reproduce: replaced children and changed attributes.
pub(crate) struct Changes {
    /// Paths (no leading '/') of obs columns and obsm entries that are replaced.
    pub replaced: BTreeSet<String>,
    /// (object path, attribute name) pairs that are rewritten.
    pub attrs: BTreeSet<(String, String)>,
}

impl Plan<'_> {
    /// Nothing to add: a plain rewrite.
    fn unchanged() -> Self {
        Plan {
            n_obs: 0,
            obs: Vec::new(),
            obsm: Vec::new(),
            column_order: Vec::new(),
            has_obsm: true,
            legacy: Vec::new(),
            legacy_obsm: None,
            consumed: BTreeSet::new(),
        }
    }

    /// Whether any old compound table is converted.
    fn converts(&self) -> bool {
        !self.legacy.is_empty() || self.legacy_obsm.is_some()
    }

    fn changes(&self) -> Changes {
        let mut replaced: BTreeSet<String> =
            self.obs.iter().map(|(n, _)| format!("obs/{n}")).chain(self.obsm.iter().map(|(n, _)| format!("obsm/{n}"))).collect();
        // Converted tables are checked by value (`check_converted`), not object by object.
        replaced.extend(self.legacy.iter().map(|f| f.name.to_string()));
        if self.legacy_obsm.is_some() {
            replaced.insert("obsm".into());
        }
        replaced.extend(self.consumed.iter().map(|c| format!("uns/{c}")));
        let mut attrs = BTreeSet::new();
        if !self.obs.is_empty() && !self.legacy.iter().any(|f| f.name == "obs") {
            attrs.insert(("obs".to_string(), "column-order".to_string()));
        }
        Changes { replaced, attrs }
    }
}

impl Original {
    fn open(bytes: Vec<u8>, file_name: &str) -> Result<Self> {
        let invalid = |reason: String| SclabelError::InvalidFile { file: file_name.to_string(), reason };
        if !hdf5_pure::is_hdf5_bytes(&bytes) {
            return Err(invalid(format!("no HDF5 signature in its {} bytes (not an HDF5 file)", bytes.len())));
        }
        let len = bytes.len();
        let file = File::from_bytes(bytes).map_err(|e| invalid(format!("cannot open as HDF5: {e}")))?;
        Self::from_file(file, file_name, len)
    }

    /// A file opened any way (bytes, or natively a file read on demand) of `len` bytes.
    fn from_file(file: File, file_name: &str, len: usize) -> Result<Self> {
        let eof = file.superblock().eof_address;
        if eof != u64::MAX && eof > len as u64 {
            return Err(SclabelError::InvalidFile {
                file: file_name.to_string(),
                reason: format!("truncated: the file declares {eof} bytes but only {len} are present"),
            });
        }
        let budget = (len as u64).saturating_mul(MAX_INFLATION).max(MIN_DECODED_BUDGET);
        Ok(Self { file, name: file_name.to_string(), budget, len, walk: WalkGuard::new(len) })
    }

    fn unsupported(&self, path: &str, reason: String) -> SclabelError {
        SclabelError::UnsupportedLayout { file: self.name.clone(), element: shown(path).to_string(), reason }
    }

    /// An hdf5-pure read error: "we don't read this" or "the bytes are broken".
    fn h5(&self, path: &str, e: hdf5_pure::Error) -> SclabelError {
        use hdf5_pure::{Error as E, FormatError as F};
        let layout = matches!(&e, E::NotADataset(_) | E::NotAGroup(_) | E::NotANamedDatatype(_))
            || matches!(
                &e,
                E::Format(
                    F::PathNotFound(_)
                        | F::TypeMismatch { .. }
                        | F::UnsupportedFilter(_)
                        | F::UnsupportedVirtualLayout
                        | F::UnsupportedExternalStorage
                        | F::UnsupportedFilteredHeapObject
                        | F::UnsupportedSohmReference
                )
            );
        if layout {
            self.unsupported(path, e.to_string())
        } else {
            SclabelError::InvalidFile { file: self.name.clone(), reason: format!("while reading '{}': {e}", shown(path)) }
        }
    }

    fn bad_option(&self, option: String, reason: String) -> SclabelError {
        SclabelError::InvalidOption { option, reason: format!("{reason} (writing into {})", self.name) }
    }

    /// Checks the additions against the file: names, lengths, and an obs / obsm it can write into.
    fn plan<'a>(&self, add: &'a H5adAdditions) -> Result<Plan<'a>> {
        let root = self.file.root();
        let groups = root.groups().map_err(|e| self.h5("/", e))?;
        let datasets = root.datasets().map_err(|e| self.h5("/", e))?;
        // Nothing to add: a plain rewrite, whatever the layout.
        if add.obs.is_empty() && add.obsm.is_empty() {
            return Ok(Plan::unchanged());
        }
        let is_group = |name: &str| groups.iter().any(|g| g == name);
        let is_dataset = |name: &str| datasets.iter().any(|d| d == name);
        let mut legacy = Vec::new();
        let mut consumed = BTreeSet::new();
        let (index, n_obs, mut column_order) = if is_group("obs") {
            // n_obs is the length of obs's index.
            let obs = root.group("obs").map_err(|e| self.h5("obs", e))?;
            let attrs = obs.attrs().map_err(|e| self.h5("obs", e))?;
            let obs_datasets = obs.datasets().map_err(|e| self.h5("obs", e))?;
            let index = match attrs.get("_index").and_then(AttrValue::as_str) {
                Some(i) => i.to_string(),
                None if obs_datasets.iter().any(|d| d == "_index") => "_index".into(),
                None => return Err(self.unsupported("obs", "dataframe without an '_index' attribute or index column".into())),
            };
            let index_path = format!("obs/{index}");
            let shape = obs.dataset(&index).and_then(|d| d.shape()).map_err(|e| self.h5(&index_path, e))?;
            let [n_obs] = shape[..] else {
                return Err(self.unsupported(&index_path, format!("the obs index must be 1-D, found shape {shape:?}")));
            };
            let column_order: Vec<String> = match attrs.get("column-order") {
                // An empty list is written as an empty float array, which has no strings.
                Some(v) => v.as_strings().map(<[String]>::to_vec).unwrap_or_default(),
                None => Vec::new(),
            };
            (index, n_obs, column_order)
        } else if is_dataset("obs") {
            // anndata ≤ 0.6: obs (and var) are converted to dataframe groups, together, since
            // anndata only takes categories from uns while obs is still a compound dataset.
            let uns = if is_group("uns") {
                let g = root.group("uns").map_err(|e| self.h5("uns", e))?;
                let names = g.datasets().map_err(|e| self.h5("uns", e))?;
                Some((g, names))
            } else {
                None
            };
            let replaced: Vec<&str> = add.obs.iter().map(|(n, _)| n.as_str()).collect();
            let obs = self.legacy_frame(&root, "obs", uns.as_ref(), &replaced, &mut consumed)?;
            let order = obs.fields.iter().map(|f| f.member.name.clone()).collect();
            let n_obs = obs.table.n;
            legacy.push(obs);
            if is_dataset("var") {
                legacy.push(self.legacy_frame(&root, "var", uns.as_ref(), &[], &mut consumed)?);
            }
            ("_index".to_string(), n_obs, order)
        } else {
            return Err(self.unsupported("obs", "missing (is this an AnnData .h5ad file?)".into()));
        };
        // obsm is converted with obs, or to take new matrices; a modern obs keeps an old obsm it
        // does not add to as it is.
        let legacy_obsm = if is_dataset("obsm") && (!legacy.is_empty() || !add.obsm.is_empty()) {
            let replaced: Vec<&str> = add.obsm.iter().map(|(n, _)| n.as_str()).collect();
            Some(self.legacy_obsm(&root, n_obs, &replaced)?)
        } else {
            None
        };
        let has_obsm = is_group("obsm") || legacy_obsm.is_some();

        let mut new_obs = Vec::with_capacity(add.obs.len());
        for (name, values) in &add.obs {
            self.check_name("obs", name, &index, new_obs.iter().map(|(n, _)| *n))?;
            let col = self.column(name, values, n_obs)?;
            if !column_order.iter().any(|c| c == name) {
                column_order.push(name.clone());
            }
            new_obs.push((name.as_str(), col));
        }
        let mut new_obsm = Vec::with_capacity(add.obsm.len());
        for (name, m) in &add.obsm {
            self.check_name("obsm", name, "", new_obsm.iter().map(|(n, _)| *n))?;
            let want = n_obs.checked_mul(m.n_cols as u64);
            if want != Some(m.values.len() as u64) {
                return Err(SclabelError::shape(format!(
                    "{}: obsm '{name}' has {} values, but {n_obs} cells × {} columns need {}",
                    self.name,
                    m.values.len(),
                    m.n_cols,
                    want.map_or("more than can be counted".into(), |w| w.to_string())
                )));
            }
            new_obsm.push((name.as_str(), m));
        }
        Ok(Plan { n_obs, obs: new_obs, obsm: new_obsm, column_order, has_obsm, legacy, legacy_obsm, consumed })
    }

    fn check_name<'n>(&self, group: &str, name: &str, index: &str, mut earlier: impl Iterator<Item = &'n str>) -> Result<()> {
        let bad = |reason: &str| Err(self.bad_option(format!("additions.{group}['{name}']"), reason.to_string()));
        if name.is_empty() || name == "." || name == ".." {
            return bad("not a usable name");
        }
        if name.contains('/') {
            return bad("a name may not contain '/'");
        }
        if name.contains('\0') {
            return bad("a name may not contain a NUL character");
        }
        if group == "obs" && (name == index || name == "__categories") {
            return bad("that name is reserved in obs (the index column / anndata 0.7 categories)");
        }
        if earlier.any(|n| n == name) {
            return bad("given twice");
        }
        Ok(())
    }

    fn column<'a>(&self, name: &str, values: &'a ObsValues, n_obs: u64) -> Result<NewColumn<'a>> {
        let len = match values {
            ObsValues::Categorical(v) => v.len(),
            ObsValues::CategoricalCodes { codes, .. } => codes.len(),
            ObsValues::F32(v) => v.len(),
            ObsValues::I32(v) => v.len(),
            ObsValues::Bool(v) => v.len(),
        };
        if len as u64 != n_obs {
            return Err(SclabelError::shape(format!("{}: obs column '{name}' has {len} values but obs has {n_obs} cells", self.name)));
        }
        Ok(match values {
            ObsValues::Categorical(labels) => {
                let mut categories: Vec<&str> = labels.iter().flatten().map(String::as_str).collect();
                categories.sort_unstable();
                categories.dedup();
                let index: HashMap<&str, i32> = categories.iter().enumerate().map(|(i, c)| (*c, i as i32)).collect();
                let codes = labels.iter().map(|l| l.as_deref().map_or(-1, |l| index[l])).collect();
                NewColumn::Categorical { categories, codes }
            }
            ObsValues::CategoricalCodes { categories, codes } => {
                let mut seen = BTreeSet::new();
                if let Some(dup) = categories.iter().find(|c| !seen.insert(c.as_str())) {
                    return Err(SclabelError::values(format!("obs column '{name}': category '{dup}' appears twice")));
                }
                if let Some(c) = codes.iter().find(|&&c| c < -1 || c >= categories.len() as i32) {
                    return Err(SclabelError::values(format!(
                        "obs column '{name}': code {c} outside -1..{} ({} categories)",
                        categories.len(),
                        categories.len()
                    )));
                }
                NewColumn::Categorical { categories: categories.iter().map(String::as_str).collect(), codes: codes.clone() }
            }
            ObsValues::F32(v) => NewColumn::Plain(PlainColumn::F32(v)),
            ObsValues::I32(v) => NewColumn::Plain(PlainColumn::I32(v)),
            ObsValues::Bool(v) => NewColumn::Plain(PlainColumn::Bool(v)),
        })
    }

    // ------------------------------------------------------------------ the rewrite

    /// Copies group `g` (at `path`, "" for the root) into `sink`, with the plan's additions.
    fn copy_group<S: Sink>(&self, sink: &mut S, g: &Group, path: &str, plan: &Plan) -> Result<()> {
        let _level = self.walk.enter(1).map_err(|reason| self.unsupported(path, reason))?;
        let skip: Vec<&str> = match path {
            "obs" => plan.obs.iter().map(|(n, _)| *n).collect(),
            "obsm" => plan.obsm.iter().map(|(n, _)| *n).collect(),
            "uns" => plan.consumed.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        let replaced_attrs: &[&str] = if path == "obs" && !plan.obs.is_empty() { &["column-order"] } else { &[] };
        let attrs = g.attrs().map_err(|e| self.h5(path, e))?;
        let types = g.attr_datatypes().map_err(|e| self.h5(path, e))?;
        for (name, value) in self.attrs(path, attrs, types, replaced_attrs)? {
            sink.attr(&name, value);
        }
        if let Some(t) = g.named_datatypes().map_err(|e| self.h5(path, e))?.first() {
            return Err(self.unsupported(&child(path, t), "a committed (named) datatype, which this rewrite does not reproduce".into()));
        }
        let mut datasets = g.datasets().map_err(|e| self.h5(path, e))?;
        datasets.sort_unstable();
        for name in datasets.iter().filter(|n| !skip.contains(&n.as_str())) {
            let p = child(path, name);
            if path.is_empty() {
                if let Some(frame) = plan.legacy.iter().find(|f| f.name == name) {
                    self.write_frame(sink, frame, plan)?;
                    continue;
                }
                if let (Some(obsm), "obsm") = (&plan.legacy_obsm, name.as_str()) {
                    write_obsm(sink, obsm, plan);
                    continue;
                }
            }
            let ds = g.dataset(name).map_err(|e| self.h5(&p, e))?;
            self.copy_dataset(sink.dataset(name), &ds, &p, &[])?;
        }
        let mut groups = g.groups().map_err(|e| self.h5(path, e))?;
        groups.sort_unstable();
        for name in groups.iter().filter(|n| !skip.contains(&n.as_str())) {
            let p = child(path, name);
            let sub = g.group(name).map_err(|e| self.h5(&p, e))?;
            let mut gb = sink.new_group(name);
            self.copy_group(&mut gb, &sub, &p, plan)?;
            sink.group(gb.finish());
        }
        match path {
            "obs" => {
                if !plan.obs.is_empty() {
                    sink.attr("column-order", AttrValue::VarLenStringArray(plan.column_order.clone()));
                }
                for (name, col) in &plan.obs {
                    write_column(sink, name, col);
                }
            }
            "obsm" => {
                for (name, m) in &plan.obsm {
                    write_dense(sink.dataset(name), plan.n_obs, m);
                }
            }
            "" if !plan.has_obsm && !plan.obsm.is_empty() => {
                let mut gb = sink.new_group("obsm");
                set_encoding(&mut gb, "dict", "0.1.0");
                for (name, m) in &plan.obsm {
                    write_dense(gb.dataset(name), plan.n_obs, m);
                }
                sink.group(gb.finish());
            }
            _ => {}
        }
        Ok(())
    }

    /// The attributes to write for an object, in name order, minus `skip`; refuses any whose value
    /// hdf5-pure can't read (it would otherwise be dropped).
    fn attrs(&self, path: &str, mut values: HashMap<String, AttrValue>, types: HashMap<String, Datatype>, skip: &[&str]) -> Result<Vec<(String, AttrValue)>> {
        let mut names: Vec<String> = types.keys().filter(|n| !skip.contains(&n.as_str())).cloned().collect();
        names.sort_unstable();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(why) = types.get(&name).and_then(unwritable_attr) {
                let hint = if why == "object references" {
                    " (anndata 0.7 categoricals point at their categories this way; re-save the file with anndata ≥ 0.8)"
                } else {
                    ""
                };
                return Err(self.unsupported(path, format!("attribute '{name}' is {why}, which hdf5-pure's public API cannot write back{hint}")));
            }
            let Some(value) = values.remove(&name) else {
                return Err(self.unsupported(path, format!("attribute '{name}' has a value hdf5-pure cannot read, so it can't be carried over")));
            };
            if let Some(s) = attr_strings(&value).iter().find(|s| !safe_string(s)) {
                return Err(self.unsupported(path, format!("attribute '{name}' holds the string {s:?}, {UNSAFE_STRING}")));
            }
            out.push((name, value));
        }
        Ok(out)
    }

    /// Copies dataset `ds` (at `path`) into `db`: datatype, shape, values, storage, and its
    /// attributes but `skip_attrs`.
    fn copy_dataset(&self, db: &mut DatasetBuilder, ds: &Dataset, path: &str, skip_attrs: &[&str]) -> Result<()> {
        let h5 = |e| self.h5(path, e);
        let dtype = ds.datatype().map_err(h5)?;
        let shape = ds.shape().map_err(h5)?;
        let layout = ds.layout().map_err(h5)?;
        if matches!(layout, Layout::Virtual) {
            return Err(self.unsupported(path, "a virtual dataset (its data live in other files)".into()));
        }
        let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let bytes = n.and_then(|n| n.checked_mul(u64::from(dtype.type_size().max(1))));
        let n = match (n, bytes) {
            (Some(n), Some(b)) if b <= self.budget && usize::try_from(b).is_ok() => n,
            _ => {
                return Err(SclabelError::InvalidFile {
                    file: self.name.clone(),
                    reason: format!("'{path}' declares shape {shape:?}, more than a {}-byte file can hold", self.len),
                })
            }
        };
        if is_vlen_string(&dtype) {
            // Re-staged as strings (their heap references can't be copied), then given the
            // source's exact string datatype (charset, padding) back.
            let opts = VlenStringReadOptions::new().with_max_elements(usize::try_from(n).unwrap_or(usize::MAX)).with_max_payload_bytes(self.len);
            let strings = ds.read_vlen_strings(opts).map_err(h5)?;
            if strings.len() as u64 != n {
                return Err(self.unsupported(path, format!("{} strings decoded for {n} elements", strings.len())));
            }
            if let Some(s) = strings.iter().find(|s| !safe_string(s)) {
                return Err(self.unsupported(path, format!("holds the string {s:?}, {UNSAFE_STRING}")));
            }
            let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
            db.with_vlen_strings(&refs).with_dtype(dtype);
        } else if let Some(why) = unreproducible(&dtype) {
            return Err(self.unsupported(path, format!("a dataset of {why}, which this rewrite does not reproduce")));
        } else if n == 0 {
            db.with_dtype(dtype);
        } else {
            let raw = ds.read_raw().map_err(h5)?;
            if raw.len() as u64 != bytes.unwrap_or(0) {
                return Err(self.unsupported(path, format!("{} bytes decoded for {n} elements of {} bytes", raw.len(), dtype.type_size())));
            }
            db.with_raw_data(dtype, raw, n);
        }
        db.with_shape(&shape);
        if let Some(max) = ds.maxshape().map_err(h5)? {
            db.with_maxshape(&max);
        }
        if let Layout::Chunked { chunk_shape, .. } = &layout {
            db.with_chunks(chunk_shape);
        }
        for f in ds.filter_pipeline() {
            if !reapply(db, &f) {
                let name = f.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                return Err(self.unsupported(path, format!("filter {}{name}: only deflate, shuffle, fletcher32 and LZF are re-applied", f.id)));
            }
        }
        let attrs = ds.attrs().map_err(h5)?;
        let types = ds.attr_datatypes().map_err(h5)?;
        for (name, value) in self.attrs(path, attrs, types, skip_attrs)? {
            db.set_attr(&name, value);
        }
        Ok(())
    }
}

/// Adds filter `f` to `db`; false for one this rewrite does not apply.
fn reapply(db: &mut DatasetBuilder, f: &Filter) -> bool {
    match f.id {
        1 => db.with_deflate(f.client_data.first().copied().unwrap_or(6)),
        2 => db.with_shuffle(),
        3 => db.with_fletcher32(),
        32000 => db.with_lzf(),
        _ => return false,
    };
    true
}

/// Why an attribute of this type can't be written back as it is (`None`: it can, up to the
/// normalisations in the module docs). The check after writing catches anything missed here.
fn unwritable_attr(dt: &Datatype) -> Option<String> {
    let le = |o: &DatatypeByteOrder| matches!(o, DatatypeByteOrder::LittleEndian);
    match dt {
        Datatype::FixedPoint { size: 1 | 2 | 4 | 8, byte_order, .. } | Datatype::FloatingPoint { size: 4 | 8, byte_order, .. } if le(byte_order) => None,
        Datatype::String { padding: StringPadding::SpacePad, .. } => Some(describe(dt)),
        Datatype::String { .. } => None,
        Datatype::VariableLength { .. } if is_vlen_string(dt) => None,
        Datatype::Enumeration { base_type, members, .. } if is_bool_enum(base_type, members) => None,
        _ => Some(describe(dt)),
    }
}

/// A datatype in words, for messages.
fn describe(dt: &Datatype) -> String {
    let order = |o: &DatatypeByteOrder| if matches!(o, DatatypeByteOrder::BigEndian) { " big-endian" } else { "" };
    match dt {
        Datatype::FixedPoint { size, byte_order, layout } => {
            format!("{}int{}{}", if layout.signed { "" } else { "u" }, u64::from(*size) * 8, order(byte_order))
        }
        Datatype::FloatingPoint { size, byte_order, .. } => format!("float{}{}", u64::from(*size) * 8, order(byte_order)),
        Datatype::String { size, padding, .. } => format!("fixed-length strings ({size} bytes, {padding:?})"),
        Datatype::VariableLength { .. } if is_vlen_string(dt) => "variable-length strings".into(),
        Datatype::VariableLength { .. } => "variable-length sequences".into(),
        Datatype::Enumeration { members, .. } => {
            format!("an enumeration {{{}}}", members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "))
        }
        Datatype::Compound { members, .. } => format!("a compound type with {} fields", members.len()),
        Datatype::Reference { .. } => "object references".into(),
        Datatype::Array { base_type, dimensions } => format!("arrays {dimensions:?} of {}", describe(base_type)),
        other => format!("{other:?}"),
    }
}

const UNSAFE_STRING: &str = "which hdf5-pure's public reader cannot tell apart from invalid UTF-8 or a truncated string, so it is not rewritten";

/// NUL and U+FFFD are what hdf5-pure's lossy string decoding could have produced.
fn safe_string(s: &str) -> bool {
    !s.contains(['\0', '\u{FFFD}'])
}

fn attr_strings(v: &AttrValue) -> Vec<&str> {
    v.as_strings().map(|s| s.iter().map(String::as_str).collect()).or_else(|| v.as_str().map(|s| vec![s])).unwrap_or_default()
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}/{name}")
    }
}

/// A variable-length string type (or MATLAB's VL of one-byte strings).
fn is_vlen_string(dt: &Datatype) -> bool {
    match dt {
        Datatype::VariableLength { is_string: true, .. } => true,
        Datatype::VariableLength { base_type, .. } => matches!(base_type.as_ref(), Datatype::String { size: 1, .. }),
        _ => false,
    }
}

/// Why element bytes of this type can't be copied as they are: they hold file addresses.
fn unreproducible(dt: &Datatype) -> Option<String> {
    match dt {
        Datatype::FixedPoint { .. }
        | Datatype::FloatingPoint { .. }
        | Datatype::Time { .. }
        | Datatype::String { .. }
        | Datatype::BitField { .. }
        | Datatype::Opaque { .. } => None,
        Datatype::Reference { .. } => Some("object or region references".into()),
        Datatype::VariableLength { .. } => Some("variable-length data other than strings".into()),
        Datatype::Compound { members, .. } => {
            members.iter().find_map(|m| unreproducible(&m.datatype).map(|w| format!("a compound type whose field '{}' is {w}", m.name)))
        }
        Datatype::Enumeration { base_type, .. } => unreproducible(base_type),
        Datatype::Array { base_type, .. } => unreproducible(base_type).map(|w| format!("arrays of {w}")),
        _ => Some("an HDF5 type class hdf5-pure does not name".into()),
    }
}

// ------------------------------------------------------------------ the anndata ≤ 0.6 layout

/// Attributes a converted dataframe group gets from this rewrite (a source attribute of the same
/// name is not carried over).
const FRAME_ATTRS: [&str; 4] = ["encoding-type", "encoding-version", "_index", "column-order"];
const ENCODING_ATTRS: [&str; 2] = ["encoding-type", "encoding-version"];

/// `uns` and the names of its datasets.
type Uns = (Group, Vec<String>);

/// A compound dataset's records as read, and what its converted datasets keep from it.
struct Table {
    n: u64,
    /// Bytes per record.
    record: usize,
    /// The element bytes of all records.
    raw: Vec<u8>,
    /// Rows per chunk (`None`: not chunked).
    chunk_rows: Option<u64>,
    filters: Vec<Filter>,
    /// The dataset's attributes, carried over to the group it becomes.
    attrs: Vec<(String, AttrValue)>,
}

impl Table {
    /// The bytes of field `m` in every record, in order (its offset was checked on reading).
    fn member(&self, m: &CompoundMember) -> Vec<u8> {
        let off = usize::try_from(m.byte_offset).unwrap_or(usize::MAX);
        let size = m.datatype.type_size() as usize;
        let mut out = Vec::with_capacity(self.raw.len() / self.record.max(1) * size);
        for rec in self.raw.chunks_exact(self.record.max(1)) {
            if let Some(b) = off.checked_add(size).and_then(|end| rec.get(off..end)) {
                out.extend_from_slice(b);
            }
        }
        out
    }
}

/// How one field of an old compound dataframe is written.
enum FieldKind {
    /// Fixed-length strings: a `string-array` of the same datatype.
    Strings,
    /// Numbers or booleans: an `array` of the same datatype.
    Array,
    /// Integer codes whose categories are the uns dataset named here: a `categorical` group.
    Categorical { categories: String },
    /// An obs field that an addition of the same name replaces: not written.
    Replaced,
}

struct LegacyField {
    member: CompoundMember,
    kind: FieldKind,
}

/// obs or var as one compound dataset (anndata ≤ 0.6), to be written as a dataframe group.
struct LegacyFrame {
    name: &'static str,
    table: Table,
    /// The first field, the index (fixed-length strings), written as `_index`.
    index: CompoundMember,
    /// The other fields, in order.
    fields: Vec<LegacyField>,
}

impl LegacyFrame {
    /// The group's `column-order`: the fields in order, and for obs the new columns after them.
    fn column_order(&self, plan: &Plan) -> Vec<String> {
        if self.name == "obs" {
            plan.column_order.clone()
        } else {
            self.fields.iter().map(|f| f.member.name.clone()).collect()
        }
    }
}

/// obsm as one compound dataset of array fields (anndata ≤ 0.6), to be written as a dict group.
struct LegacyObsm {
    table: Table,
    /// The fields kept (not replaced by an addition): field, element type, shape of the matrix.
    entries: Vec<(CompoundMember, Datatype, Vec<u64>)>,
}

impl Original {
    /// An old compound table this conversion does not map, with the way around it.
    fn not_converted(&self, path: &str, reason: String) -> SclabelError {
        self.unsupported(
            path,
            format!(
                "{reason}. Tables in this (anndata ≤ 0.6) layout are converted to the modern one when something is added, and this \
                 one can't be; re-save the file with anndata ≥ 0.8 first: anndata.read_h5ad(path).write_h5ad(new_path)"
            ),
        )
    }

    /// Reads the compound table `name` under the root, checking its shape, its fields' offsets
    /// and its attributes (all but `skip_attrs` are carried over).
    fn read_table(&self, root: &Group, name: &str, skip_attrs: &[&str]) -> Result<(Table, Vec<CompoundMember>)> {
        let h5 = |e| self.h5(name, e);
        let ds = root.dataset(name).map_err(h5)?;
        let dtype = ds.datatype().map_err(h5)?;
        let Datatype::Compound { size, members } = dtype else {
            return Err(self.not_converted(name, format!("a dataset of {} (expected a group, or the compound table of anndata ≤ 0.6)", describe(&dtype))));
        };
        let shape = ds.shape().map_err(h5)?;
        let [n] = shape[..] else {
            return Err(self.not_converted(name, format!("a compound table must be 1-D, found shape {shape:?}")));
        };
        if size == 0 {
            return Err(self.not_converted(name, "a compound table of 0-byte records".into()));
        }
        let bytes = n.checked_mul(u64::from(size)).filter(|&b| b <= self.budget && usize::try_from(b).is_ok()).ok_or_else(|| SclabelError::InvalidFile {
            file: self.name.clone(),
            reason: format!("'{name}' declares {n} records of {size} bytes, more than a {}-byte file can hold", self.len),
        })?;
        for m in &members {
            let width = m.datatype.type_size();
            if width == 0 || m.byte_offset.checked_add(u64::from(width)).is_none_or(|end| end > u64::from(size)) {
                return Err(self.not_converted(&child(name, &m.name), format!("field '{}' does not lie within its {size}-byte record", m.name)));
            }
        }
        let raw = if n == 0 { Vec::new() } else { ds.read_raw().map_err(h5)? };
        if raw.len() as u64 != bytes {
            return Err(self.not_converted(name, format!("{} bytes decoded for {n} records of {size} bytes", raw.len())));
        }
        let chunk_rows = ds.chunk_shape().map_err(h5)?.and_then(|c| c.first().copied()).filter(|&c| c > 0);
        let attrs = self.attrs(name, ds.attrs().map_err(h5)?, ds.attr_datatypes().map_err(h5)?, skip_attrs)?;
        Ok((Table { n, record: size as usize, raw, chunk_rows, filters: ds.filter_pipeline(), attrs }, members))
    }

    /// Plans obs or var (`name`) of the anndata ≤ 0.6 layout as a dataframe group. Fields named in
    /// `replaced` are left out; the uns categories a field takes are added to `consumed`.
    fn legacy_frame(&self, root: &Group, name: &'static str, uns: Option<&Uns>, replaced: &[&str], consumed: &mut BTreeSet<String>) -> Result<LegacyFrame> {
        let (table, members) = self.read_table(root, name, &FRAME_ATTRS)?;
        let mut members = members.into_iter();
        let index = match members.next() {
            Some(m) if matches!(m.datatype, Datatype::String { .. }) && (m.name == "index" || m.name == "_index") => m,
            Some(m) => {
                return Err(self.not_converted(
                    name,
                    format!(
                        "a compound table whose first field is '{}' ({}), but an anndata ≤ 0.6 table starts with its index, a field 'index' of \
                         fixed-length strings",
                        m.name,
                        describe(&m.datatype)
                    ),
                ))
            }
            None => return Err(self.not_converted(name, "a compound table without fields".into())),
        };
        let mut fields = Vec::new();
        for m in members {
            let path = child(name, &m.name);
            if m.name.is_empty() || m.name == "." || m.name == ".." || m.name.contains('/') || m.name == "_index" {
                return Err(self.not_converted(&path, format!("a field named {:?}, which can't name a column of a dataframe group", m.name)));
            }
            let kind = if replaced.contains(&m.name.as_str()) {
                // anndata would drop its categories from uns on reading; they go with the column.
                if let Ok(Some(c)) = self.categories_for(&table, &m, &path, uns) {
                    consumed.insert(c);
                }
                FieldKind::Replaced
            } else {
                match &m.datatype {
                    Datatype::String { .. } => FieldKind::Strings,
                    Datatype::FixedPoint { size: 1 | 2 | 4 | 8, .. } => match self.categories_for(&table, &m, &path, uns)? {
                        Some(c) => {
                            consumed.insert(c.clone());
                            FieldKind::Categorical { categories: c }
                        }
                        None => FieldKind::Array,
                    },
                    dt if numeric_element(dt) => FieldKind::Array,
                    Datatype::Enumeration { base_type, .. } if matches!(**base_type, Datatype::FixedPoint { size: 1 | 2 | 4 | 8, .. }) => FieldKind::Array,
                    other => {
                        return Err(self.not_converted(
                            &path,
                            format!("field '{}' is {}, which has no anndata column encoding this conversion writes", m.name, describe(other)),
                        ))
                    }
                }
            };
            fields.push(LegacyField { member: m, kind });
        }
        Ok(LegacyFrame { name, table, index, fields })
    }

    /// The uns dataset (name) holding the categories of the integer codes in field `m` (at `path`):
    /// `uns/<field>_categories`, where anndata ≤ 0.6 put them. `None` when there is none or `m`
    /// holds no integers; an error when the codes don't fit the categories.
    fn categories_for(&self, table: &Table, m: &CompoundMember, path: &str, uns: Option<&Uns>) -> Result<Option<String>> {
        let Datatype::FixedPoint { size, byte_order, layout } = &m.datatype else { return Ok(None) };
        let Some((uns, names)) = uns else { return Ok(None) };
        let name = format!("{}_categories", m.name);
        if !names.contains(&name) {
            return Ok(None);
        }
        let cats_path = format!("uns/{name}");
        let h5 = |e| self.h5(&cats_path, e);
        let ds = uns.dataset(&name).map_err(h5)?;
        let (dt, shape) = (ds.datatype().map_err(h5)?, ds.shape().map_err(h5)?);
        if shape.len() > 1 || category_encoding(&dt).is_none() {
            return Err(self.not_converted(
                &cats_path,
                format!("the categories of '{path}' are {} of shape {shape:?}, not a 1-D array of strings or numbers", describe(&dt)),
            ));
        }
        let count = i128::from(shape.first().copied().unwrap_or(1));
        let be = matches!(byte_order, DatatypeByteOrder::BigEndian);
        let codes = table.member(m);
        for (row, code) in codes.chunks_exact((*size as usize).max(1)).enumerate() {
            let c = int_at(code, be, layout.signed);
            if c < -1 || c >= count {
                return Err(
                    self.not_converted(path, format!("row {row} holds category code {c}, but {cats_path} has {count} categories (codes -1 to {})", count - 1))
                );
            }
        }
        Ok(Some(name))
    }

    /// Plans obsm of the anndata ≤ 0.6 layout (a compound of array fields) as a dict group; fields
    /// named in `replaced` are left out.
    fn legacy_obsm(&self, root: &Group, n_obs: u64, replaced: &[&str]) -> Result<LegacyObsm> {
        let (table, members) = self.read_table(root, "obsm", &ENCODING_ATTRS)?;
        if table.n != n_obs {
            return Err(self.not_converted("obsm", format!("{} rows, but obs has {n_obs}", table.n)));
        }
        let mut entries = Vec::new();
        for m in members {
            let path = child("obsm", &m.name);
            if m.name.is_empty() || m.name == "." || m.name == ".." || m.name.contains('/') {
                return Err(self.not_converted(&path, format!("a field named {:?}, which can't name an obsm entry", m.name)));
            }
            if replaced.contains(&m.name.as_str()) {
                continue;
            }
            let (base, dims) = match &m.datatype {
                Datatype::Array { base_type, dimensions } => ((**base_type).clone(), dimensions.iter().map(|&d| u64::from(d)).collect()),
                other => (other.clone(), Vec::new()),
            };
            if !numeric_element(&base) {
                return Err(self.not_converted(&path, format!("field '{}' is {}, expected numbers or arrays of numbers", m.name, describe(&m.datatype))));
            }
            let mut shape = vec![table.n];
            shape.extend::<Vec<u64>>(dims);
            entries.push((m, base, shape));
        }
        Ok(LegacyObsm { table, entries })
    }

    /// Writes a converted obs / var: a dataframe group of the fields (and for obs the new columns).
    fn write_frame<S: Sink>(&self, sink: &mut S, f: &LegacyFrame, plan: &Plan) -> Result<()> {
        let t = &f.table;
        let mut g = sink.new_group(f.name);
        for (k, v) in &t.attrs {
            g.attr(k, v.clone());
        }
        set_encoding(&mut g, "dataframe", "0.2.0");
        g.attr("_index", AttrValue::VarLenString("_index".into()));
        let order = f.column_order(plan);
        // anndata writes an empty list as an empty float array (h5py has no empty string array).
        g.attr("column-order", if order.is_empty() { AttrValue::F64Array(Vec::new()) } else { AttrValue::VarLenStringArray(order) });
        write_values(g.dataset("_index"), t, &f.index.datatype, t.member(&f.index), &[t.n], "string-array");
        for field in &f.fields {
            let (m, name) = (&field.member, field.member.name.as_str());
            match &field.kind {
                FieldKind::Strings => write_values(g.dataset(name), t, &m.datatype, t.member(m), &[t.n], "string-array"),
                FieldKind::Array => write_values(g.dataset(name), t, &m.datatype, t.member(m), &[t.n], "array"),
                FieldKind::Categorical { categories } => {
                    let cats_path = format!("uns/{categories}");
                    let h5 = |e| self.h5(&cats_path, e);
                    let ds = self.file.root().group("uns").and_then(|u| u.dataset(categories)).map_err(h5)?;
                    let (dt, shape) = (ds.datatype().map_err(h5)?, ds.shape().map_err(h5)?);
                    let mut cg = g.new_group(name);
                    set_encoding(&mut cg, "categorical", "0.2.0");
                    // As for new categoricals: int8 0 where h5py writes a bool enum (see write_column).
                    cg.attr("ordered", AttrValue::I8(0));
                    let db = cg.dataset("categories");
                    self.copy_dataset(db, &ds, &cats_path, &ENCODING_ATTRS)?;
                    if shape.is_empty() {
                        // A single category stored as a scalar: categories are 1-D.
                        db.with_shape(&[1]);
                    }
                    db.set_attr("encoding-type", AttrValue::VarLenString(category_encoding(&dt).unwrap_or("array").into()))
                        .set_attr("encoding-version", AttrValue::VarLenString("0.2.0".into()));
                    write_values(cg.dataset("codes"), t, &m.datatype, t.member(m), &[t.n], "array");
                    g.group(cg.finish());
                }
                FieldKind::Replaced => {}
            }
        }
        if f.name == "obs" {
            for (name, col) in &plan.obs {
                write_column(&mut g, name, col);
            }
        }
        sink.group(g.finish());
        Ok(())
    }

    /// Checks the converted tables of the written file by value: every field's datatype, shape,
    /// bytes and encoding, the categories, the dataframe attributes, and that uns lost the
    /// categories taken into columns.
    fn check_converted(&self, out: &File, plan: &Plan) -> std::result::Result<(), Mismatch> {
        let err = |p: &str, e: hdf5_pure::Error| (p.to_string(), e.to_string());
        let root = out.root();
        for f in &plan.legacy {
            let (t, name) = (&f.table, f.name);
            let g = root.group(name).map_err(|e| err(name, e))?;
            let attrs = g.attrs().map_err(|e| err(name, e))?;
            let text = |k: &str| attrs.get(k).and_then(AttrValue::as_str);
            let order = attrs.get("column-order").and_then(|v| v.as_strings().map(<[String]>::to_vec)).unwrap_or_default();
            if text("encoding-type") != Some("dataframe") || text("_index") != Some("_index") || order != f.column_order(plan) {
                return Err((name.to_string(), "the dataframe attributes (encoding-type, _index, column-order) differ from those written".into()));
            }
            same_values(&g, name, "_index", &f.index.datatype, &t.member(&f.index), &[t.n], "string-array")?;
            for field in &f.fields {
                let m = &field.member;
                match &field.kind {
                    FieldKind::Strings => same_values(&g, name, &m.name, &m.datatype, &t.member(m), &[t.n], "string-array")?,
                    FieldKind::Array => same_values(&g, name, &m.name, &m.datatype, &t.member(m), &[t.n], "array")?,
                    FieldKind::Categorical { categories } => {
                        let path = child(name, &m.name);
                        let cg = g.group(&m.name).map_err(|e| err(&path, e))?;
                        let enc = cg.attrs().map_err(|e| err(&path, e))?.get("encoding-type").and_then(AttrValue::as_str).map(str::to_string);
                        if enc.as_deref() != Some("categorical") {
                            return Err((path, format!("encoding-type {enc:?}, expected \"categorical\"")));
                        }
                        same_values(&cg, &path, "codes", &m.datatype, &t.member(m), &[t.n], "array")?;
                        let cats_path = format!("uns/{categories}");
                        let a = self.file.root().group("uns").and_then(|u| u.dataset(categories)).map_err(|e| err(&cats_path, e))?;
                        let b = cg.dataset("categories").map_err(|e| err(&path, e))?;
                        same_categories(&a, &b).map_err(|e| (format!("{path}/categories"), format!("{e} (against {cats_path})")))?;
                    }
                    FieldKind::Replaced => {}
                }
            }
        }
        if let Some(o) = &plan.legacy_obsm {
            let g = root.group("obsm").map_err(|e| err("obsm", e))?;
            for (m, base, shape) in &o.entries {
                same_values(&g, "obsm", &m.name, base, &o.table.member(m), shape, "array")?;
            }
        }
        if !plan.consumed.is_empty() {
            let left = root.group("uns").and_then(|u| u.datasets()).map_err(|e| err("uns", e))?;
            if let Some(c) = plan.consumed.iter().find(|c| left.contains(c)) {
                return Err((format!("uns/{c}"), "still in uns, though its column is now a categorical".into()));
            }
        }
        Ok(())
    }

    /// Reads source and output with this crate's reader and requires the same obs names, var
    /// names, obs columns (but those the additions replace), X and raw.
    fn check_reads_alike(&self, out: &[u8], plan: &Plan) -> Result<()> {
        let a = read_h5ad(self.file.as_bytes(), &self.name)?;
        let b = read_h5ad(out, &self.name).map_err(|e| self.unsupported("/", format!("the converted file does not read back: {e}")))?;
        let differ = |element: &str, what: &str| {
            Err(self.unsupported(element, format!("not reproduced faithfully: {what} read from the converted file differ from the source's")))
        };
        if a.obs_names != b.obs_names {
            return differ("obs", "the obs names");
        }
        if a.var_names != b.var_names {
            return differ("var", "the var names");
        }
        if !same_matrix(&a.x, &b.x) {
            return differ("X", "the values");
        }
        match (&a.raw, &b.raw) {
            (None, None) => {}
            (Some(x), Some(y)) if x.var_names == y.var_names && same_matrix(&x.x, &y.x) => {}
            _ => return differ("raw", "raw's values or var names"),
        }
        for (name, col) in &a.obs.columns {
            if plan.obs.iter().any(|(n, _)| n == name) {
                continue;
            }
            match b.obs.columns.iter().find(|(n, _)| n == name) {
                Some((_, c)) if same_column(col, c) => {}
                _ => return differ(&format!("obs/{name}"), "the values"),
            }
        }
        Ok(())
    }
}

/// Writes a converted obsm: a dict group of the fields as matrices, and the new matrices.
fn write_obsm<S: Sink>(sink: &mut S, o: &LegacyObsm, plan: &Plan) {
    let t = &o.table;
    let mut g = sink.new_group("obsm");
    for (k, v) in &t.attrs {
        g.attr(k, v.clone());
    }
    set_encoding(&mut g, "dict", "0.1.0");
    for (m, base, shape) in &o.entries {
        write_values(g.dataset(&m.name), t, base, t.member(m), shape, "array");
    }
    for (name, m) in &plan.obsm {
        write_dense(g.dataset(name), plan.n_obs, m);
    }
    sink.group(g.finish());
}

/// Writes `bytes` (elements of `dt`) as a dataset of `shape` with anndata's `encoding` (version
/// 0.2.0), stored like the table it comes from: its rows per chunk and the filters re-applied here.
fn write_values(db: &mut DatasetBuilder, t: &Table, dt: &Datatype, bytes: Vec<u8>, shape: &[u64], encoding: &str) {
    let n: u64 = shape.iter().product();
    if n == 0 {
        db.with_dtype(dt.clone());
    } else {
        db.with_raw_data(dt.clone(), bytes, n);
    }
    db.with_shape(shape);
    if let (Some(rows), Some(&first), true) = (t.chunk_rows, shape.first(), n > 0) {
        let mut chunk = shape.to_vec();
        chunk[0] = rows.min(first);
        db.with_chunks(&chunk);
        for f in &t.filters {
            reapply(db, f);
        }
    }
    db.set_attr("encoding-type", AttrValue::VarLenString(encoding.into())).set_attr("encoding-version", AttrValue::VarLenString("0.2.0".into()));
}

/// Checks dataset `parent/name` of the output (in group `g`) against the datatype, shape, bytes
/// and encoding it was written with.
fn same_values(g: &Group, parent: &str, name: &str, dt: &Datatype, bytes: &[u8], shape: &[u64], encoding: &str) -> std::result::Result<(), Mismatch> {
    let path = child(parent, name);
    let fail = |m: String| (path.clone(), m);
    let s = |e: hdf5_pure::Error| fail(e.to_string());
    let ds = g.dataset(name).map_err(s)?;
    let got = ds.datatype().map_err(s)?;
    if &got != dt {
        return Err(fail(format!("the datatype is {} but the source field's is {}", describe(&got), describe(dt))));
    }
    let got_shape = ds.shape().map_err(s)?;
    if got_shape != shape {
        return Err(fail(format!("the shape is {got_shape:?}, expected {shape:?}")));
    }
    let raw = if shape.iter().product::<u64>() == 0 { Vec::new() } else { ds.read_raw().map_err(s)? };
    if raw != bytes {
        return Err(fail("the values differ from the source field's".into()));
    }
    let enc = ds.attrs().map_err(s)?.get("encoding-type").and_then(AttrValue::as_str).map(str::to_string);
    if enc.as_deref() != Some(encoding) {
        return Err(fail(format!("encoding-type {enc:?}, expected {encoding:?}")));
    }
    Ok(())
}

/// The same categories: datatype, count and values (a scalar counts as one).
fn same_categories(a: &Dataset, b: &Dataset) -> std::result::Result<(), String> {
    let s = |e: hdf5_pure::Error| e.to_string();
    let (ta, tb) = (a.datatype().map_err(s)?, b.datatype().map_err(s)?);
    if ta != tb {
        return Err(format!("the datatype is {} in the source but {} in the output", describe(&ta), describe(&tb)));
    }
    let count = |d: &Dataset| d.shape().map(|s| s.iter().product::<u64>());
    if count(a).map_err(s)? != count(b).map_err(s)? {
        return Err("the number of categories differs".into());
    }
    let same = if is_vlen_string(&ta) {
        let o = VlenStringReadOptions::new();
        a.read_vlen_strings(o).map_err(s)? == b.read_vlen_strings(o).map_err(s)?
    } else {
        a.read_raw().map_err(s)? == b.read_raw().map_err(s)?
    };
    if same {
        Ok(())
    } else {
        Err("the categories differ".into())
    }
}

/// Numbers as a column holds them: integers, floats, h5py's booleans.
fn numeric_element(dt: &Datatype) -> bool {
    match dt {
        Datatype::FixedPoint { size: 1 | 2 | 4 | 8, .. } | Datatype::FloatingPoint { size: 2 | 4 | 8, .. } => true,
        Datatype::Enumeration { base_type, members, .. } => is_bool_enum(base_type, members),
        _ => false,
    }
}

/// The anndata encoding of categories of this datatype (`None`: not categories this writes).
fn category_encoding(dt: &Datatype) -> Option<&'static str> {
    match dt {
        Datatype::String { .. } => Some("string-array"),
        _ if is_vlen_string(dt) => Some("string-array"),
        _ if numeric_element(dt) => Some("array"),
        _ => None,
    }
}

/// An integer of 1 to 8 bytes in either byte order, sign-extended when `signed`.
fn int_at(b: &[u8], big_endian: bool, signed: bool) -> i128 {
    let mut v: u128 = 0;
    for i in 0..b.len() {
        let byte = if big_endian { b[i] } else { b[b.len() - 1 - i] };
        v = (v << 8) | u128::from(byte);
    }
    let bits = 8 * b.len() as u32;
    if signed && (1..128).contains(&bits) && (v >> (bits - 1)) & 1 == 1 {
        v as i128 - (1i128 << bits)
    } else {
        v as i128
    }
}

/// Bit-identical matrices (NaN equal to itself).
fn same_matrix(a: &CsrMatrix, b: &CsrMatrix) -> bool {
    a.n_rows == b.n_rows
        && a.n_cols == b.n_cols
        && a.indptr == b.indptr
        && a.indices == b.indices
        && a.data.len() == b.data.len()
        && a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Equal columns, numbers bit for bit (NaN equal to itself).
fn same_column(a: &Column, b: &Column) -> bool {
    match (a, b) {
        (Column::Numeric(x), Column::Numeric(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
        _ => a == b,
    }
}

// ------------------------------------------------------------------ anndata encodings

/// FileBuilder and GroupBuilder, so the recursion writes into either.
trait Sink {
    fn dataset(&mut self, name: &str) -> &mut DatasetBuilder;
    fn new_group(&mut self, name: &str) -> GroupBuilder;
    fn group(&mut self, g: FinishedGroup);
    fn attr(&mut self, name: &str, v: AttrValue);
}

macro_rules! impl_sink {
    ($($builder:ty),*) => {$(
        impl Sink for $builder {
            fn dataset(&mut self, name: &str) -> &mut DatasetBuilder {
                self.create_dataset(name)
            }
            fn new_group(&mut self, name: &str) -> GroupBuilder {
                self.create_group(name)
            }
            fn group(&mut self, g: FinishedGroup) {
                self.add_group(g)
            }
            fn attr(&mut self, name: &str, v: AttrValue) {
                self.set_attr(name, v)
            }
        }
    )*};
}
impl_sink!(FileBuilder, GroupBuilder);

/// anndata's `encoding-type` / `encoding-version`, as h5py writes strings (variable-length UTF-8).
fn set_encoding(sink: &mut impl Sink, kind: &str, version: &str) {
    sink.attr("encoding-type", AttrValue::VarLenString(kind.into()));
    sink.attr("encoding-version", AttrValue::VarLenString(version.into()));
}

fn array_attrs(db: &mut DatasetBuilder) -> &mut DatasetBuilder {
    db.set_attr("encoding-type", AttrValue::VarLenString("array".into())).set_attr("encoding-version", AttrValue::VarLenString("0.2.0".into()))
}

fn write_column(sink: &mut impl Sink, name: &str, col: &NewColumn) {
    match col {
        NewColumn::Categorical { categories, codes } => {
            let mut g = sink.new_group(name);
            categorical_attrs(|k, v| g.attr(k, v));
            write_categories(g.dataset("categories"), categories);
            write_codes(g.dataset("codes"), codes, categories.len());
            sink.group(g.finish());
        }
        NewColumn::Plain(plain) => write_plain_column(sink.dataset(name), plain),
    }
}

/// A categorical group's own attributes.
fn categorical_attrs(mut set: impl FnMut(&str, AttrValue)) {
    set("encoding-type", AttrValue::VarLenString("categorical".into()));
    set("encoding-version", AttrValue::VarLenString("0.2.0".into()));
    // h5py writes `ordered` as a bool enum; the public API has no enum attributes, and anndata
    // reads it with bool(), so int8 0 means the same.
    set("ordered", AttrValue::I8(0));
}

fn write_categories(db: &mut DatasetBuilder, categories: &[&str]) {
    db.with_vlen_strings(categories)
        .set_attr("encoding-type", AttrValue::VarLenString("string-array".into()))
        .set_attr("encoding-version", AttrValue::VarLenString("0.2.0".into()));
}

/// pandas' code width: int8 below 127 categories, int16 below 32767, else int32.
fn write_codes(db: &mut DatasetBuilder, codes: &[i32], n_categories: usize) {
    match n_categories {
        n if n < 127 => db.with_i8_data(&codes.iter().map(|&c| c as i8).collect::<Vec<_>>()),
        n if n < 32767 => db.with_i16_data(&codes.iter().map(|&c| c as i16).collect::<Vec<_>>()),
        _ => db.with_i32_data(codes),
    };
    array_attrs(db);
}

/// A column that is one dataset (every kind but categorical).
fn write_plain_column(db: &mut DatasetBuilder, col: &PlainColumn) {
    match col {
        PlainColumn::F32(v) => {
            array_attrs(db.with_f32_data(v));
        }
        PlainColumn::I32(v) => {
            array_attrs(db.with_i32_data(v));
        }
        PlainColumn::Bool(v) => {
            // numpy bools as h5py stores them: enum {FALSE = 0, TRUE = 1} over int8.
            let dt = EnumTypeBuilder::with_base(hdf5_pure::make_i8_type()).value("FALSE", 0).value("TRUE", 1).build().expect("a two-member int8 enum");
            let bytes: Vec<u8> = v.iter().map(|&b| u8::from(b)).collect();
            array_attrs(db.with_enum_u8_data(dt, &bytes));
        }
    }
}

fn write_dense(db: &mut DatasetBuilder, n_obs: u64, m: &DenseF32) {
    if m.values.is_empty() {
        db.with_dtype(hdf5_pure::make_f32_type());
    } else {
        db.with_f32_data(&m.values);
    }
    array_attrs(db.with_shape(&[n_obs, m.n_cols as u64]));
}

// ------------------------------------------------------------------ checking the result

/// The written bytes, shared so they can be re-opened without a copy.
struct SharedBytes(Arc<Vec<u8>>);

impl Source for SharedBytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), hdf5_pure::FormatError> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.0.len());
        match start.and_then(|s| self.0.get(s..s.checked_add(buf.len())?)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(hdf5_pure::FormatError::UnexpectedEof { expected: buf.len(), available: self.0.len().saturating_sub(offset as usize) }),
        }
    }
}

/// A source shared between hdf5-pure's reader and the appender's own reads.
struct Shared<S>(Arc<S>);

impl<S: Source> Source for Shared<S> {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), hdf5_pure::FormatError> {
        self.0.read_at(offset, buf)
    }
}

/// The output of an append, read without making it: the source's bytes, the patches over them,
/// then the tail.
struct Overlay<S> {
    base: S,
    len: u64,
    patches: Vec<(u64, Vec<u8>)>,
    tail: Arc<Vec<u8>>,
}

impl<S: Source> Source for Overlay<S> {
    fn len(&self) -> u64 {
        self.len + self.tail.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), hdf5_pure::FormatError> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.len());
        let Some(end) = end else {
            return Err(hdf5_pure::FormatError::UnexpectedEof { expected: buf.len(), available: self.len().saturating_sub(offset) as usize });
        };
        if offset < self.len {
            let n = (end.min(self.len) - offset) as usize;
            self.base.read_at(offset, &mut buf[..n])?;
        }
        if end > self.len {
            let from = offset.max(self.len);
            let at = (from - offset) as usize;
            buf[at..].copy_from_slice(&self.tail[(from - self.len) as usize..(end - self.len) as usize]);
        }
        for (p, bytes) in &self.patches {
            let (lo, hi) = (offset.max(*p), end.min(p + bytes.len() as u64));
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize].copy_from_slice(&bytes[(lo - p) as usize..(hi - p) as usize]);
            }
        }
        Ok(())
    }
}

type Mismatch = (String, String);

/// Checks that every object of `a` (except `changes`) is in `b` with the same attributes (names,
/// values, datatypes up to the normalisations in the module docs) and, for datasets, the same
/// datatype, shape, maximum shape, chunk shape and filters; with `values`, the same decoded
/// element bytes / strings too. Returns the first difference as (path, what).
pub(crate) fn compare(a: &File, b: &File, changes: &Changes, values: bool) -> std::result::Result<(), Mismatch> {
    let guard = WalkGuard::new(a.file_size().max(b.file_size()) as usize);
    compare_group(&a.root(), &b.root(), "", changes, values, &guard)
}

fn compare_group(a: &Group, b: &Group, path: &str, changes: &Changes, values: bool, guard: &WalkGuard) -> std::result::Result<(), Mismatch> {
    let _level = guard.enter(1).map_err(|reason| (shown(path).to_string(), reason))?;
    let err = |p: &str, e: hdf5_pure::Error| (shown(p).to_string(), e.to_string());
    compare_attrs(
        (a.attrs().map_err(|e| err(path, e))?, a.attr_datatypes().map_err(|e| err(path, e))?),
        (b.attrs().map_err(|e| err(path, e))?, b.attr_datatypes().map_err(|e| err(path, e))?),
        path,
        changes,
    )?;
    for name in a.datasets().map_err(|e| err(path, e))? {
        let p = child(path, &name);
        if changes.replaced.contains(&p) {
            continue;
        }
        let (da, db) = (a.dataset(&name).map_err(|e| err(&p, e))?, b.dataset(&name).map_err(|e| err(&p, e))?);
        compare_dataset(&da, &db, &p, values).map_err(|e| (p.clone(), e))?;
        compare_attrs(
            (da.attrs().map_err(|e| err(&p, e))?, da.attr_datatypes().map_err(|e| err(&p, e))?),
            (db.attrs().map_err(|e| err(&p, e))?, db.attr_datatypes().map_err(|e| err(&p, e))?),
            &p,
            changes,
        )?;
    }
    for name in a.groups().map_err(|e| err(path, e))? {
        let p = child(path, &name);
        if changes.replaced.contains(&p) {
            continue;
        }
        let (ga, gb) = (a.group(&name).map_err(|e| err(&p, e))?, b.group(&name).map_err(|e| err(&p, e))?);
        compare_group(&ga, &gb, &p, changes, values, guard)?;
    }
    Ok(())
}

type AttrPair = (HashMap<String, AttrValue>, HashMap<String, Datatype>);

fn compare_attrs(a: AttrPair, b: AttrPair, path: &str, changes: &Changes) -> std::result::Result<(), Mismatch> {
    let here = |m: String| Err((shown(path).to_string(), m));
    for (name, ta) in &a.1 {
        if changes.attrs.contains(&(path.to_string(), name.clone())) {
            continue;
        }
        let Some(tb) = b.1.get(name) else { return here(format!("attribute '{name}' is missing")) };
        if attr_type(ta) != attr_type(tb) {
            return here(format!("attribute '{name}' is {} in the source but {} in the output", describe(ta), describe(tb)));
        }
        // Debug text compares floats by value and NaN with NaN.
        let (va, vb) = (a.0.get(name).map(|v| format!("{v:?}")), b.0.get(name).map(|v| format!("{v:?}")));
        if va != vb {
            return here(format!("attribute '{name}' is {} in the source but {} in the output", va.unwrap_or_default(), vb.unwrap_or_default()));
        }
    }
    Ok(())
}

/// An attribute datatype up to what the rewrite normalises (see the module docs).
fn attr_type(dt: &Datatype) -> Datatype {
    match dt {
        Datatype::Enumeration { base_type, members, .. } if is_bool_enum(base_type, members) => (**base_type).clone(),
        Datatype::String { size, padding: StringPadding::NullTerminate, charset } => {
            Datatype::String { size: *size, padding: StringPadding::NullPad, charset: charset.clone() }
        }
        _ => dt.clone(),
    }
}

/// h5py's numpy bool: enum {FALSE, TRUE} over an 8-bit integer.
fn is_bool_enum(base: &Datatype, members: &[hdf5_pure::EnumMember]) -> bool {
    matches!(base, Datatype::FixedPoint { size: 1, .. })
        && members.len() == 2
        && members.iter().all(|m| m.name.eq_ignore_ascii_case("false") || m.name.eq_ignore_ascii_case("true"))
}

fn compare_dataset(a: &Dataset, b: &Dataset, path: &str, values: bool) -> std::result::Result<(), String> {
    let s = |e: hdf5_pure::Error| e.to_string();
    let same = |what: &str, x: String, y: String| if x == y { Ok(()) } else { Err(format!("{what} is {x} in the source but {y} in the output")) };
    same("the datatype", format!("{:?}", a.datatype().map_err(s)?), format!("{:?}", b.datatype().map_err(s)?))?;
    same("the shape", format!("{:?}", a.shape().map_err(s)?), format!("{:?}", b.shape().map_err(s)?))?;
    same("the maximum shape", format!("{:?}", a.maxshape().map_err(s)?), format!("{:?}", b.maxshape().map_err(s)?))?;
    same("the chunk shape", format!("{:?}", a.chunk_shape().map_err(s)?), format!("{:?}", b.chunk_shape().map_err(s)?))?;
    // Which filters with which parameters; their order and optional flags are the writer's.
    let filters = |d: &Dataset| {
        let mut f: Vec<(u16, Vec<u32>)> = d.filter_pipeline().into_iter().map(|f| (f.id, if f.id == 1 { f.client_data } else { Vec::new() })).collect();
        f.sort();
        format!("{f:?}")
    };
    same("the filter set", filters(a), filters(b))?;
    if values {
        let dt = a.datatype().map_err(s)?;
        if is_vlen_string(&dt) {
            let o = VlenStringReadOptions::new();
            if a.read_vlen_strings(o).map_err(s)? != b.read_vlen_strings(o).map_err(s)? {
                return Err(format!("the strings differ ({path})"));
            }
        } else if a.read_raw().map_err(s)? != b.read_raw().map_err(s)? {
            return Err(format!("the element bytes differ ({path})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::anndata::AnnData;
    use hdf5_pure::{make_i64_type, CharacterSet, CompoundTypeBuilder, DatatypeByteOrder, MaxExtent};

    /// A small AnnData file built here, so CI without the shared data sets still exercises the
    /// rewrite: dense chunked + filtered X, vlen index, a categorical, uns with odd types.
    fn small_h5ad() -> Vec<u8> {
        let n = 5;
        let mut fb = FileBuilder::new();
        fb.set_attr("encoding-type", AttrValue::VarLenString("anndata".into()));
        fb.set_attr("encoding-version", AttrValue::VarLenString("0.1.0".into()));
        let x: Vec<f32> = (0..n * 4).map(|i| (i % 3) as f32).collect();
        array_attrs(fb.create_dataset("X").with_f32_data(&x).with_shape(&[n as u64, 4]).with_chunks(&[2, 4]).with_shuffle().with_deflate(4));
        let mut obs = fb.create_group("obs");
        set_encoding(&mut obs, "dataframe", "0.2.0");
        obs.set_attr("_index", AttrValue::VarLenString("_index".into()));
        obs.set_attr("column-order", AttrValue::VarLenStringArray(vec!["cell_type".into(), "n_counts".into()]));
        obs.create_dataset("_index").with_vlen_strings(&["c0", "c1", "c2", "c3", "c4"]).with_chunks(&[5]).with_deflate(4).with_maxshape(&[MaxExtent::Fixed(5)]);
        let mut ct = obs.create_group("cell_type");
        set_encoding(&mut ct, "categorical", "0.2.0");
        ct.set_attr("ordered", AttrValue::I8(0));
        ct.create_dataset("categories").with_vlen_strings(&["B", "T"]);
        ct.create_dataset("codes").with_i8_data(&[0, 1, 1, -1, 0]);
        obs.add_group(ct.finish());
        obs.create_dataset("n_counts").with_f64_data(&[1.0, 2.5, f64::NAN, 4.0, 5.0]);
        fb.add_group(obs.finish());
        let mut var = fb.create_group("var");
        set_encoding(&mut var, "dataframe", "0.2.0");
        var.set_attr("_index", AttrValue::VarLenString("_index".into()));
        var.set_attr("column-order", AttrValue::F64Array(vec![]));
        var.create_dataset("_index").with_vlen_strings(&["g0", "g1", "g2", "g3"]);
        fb.add_group(var.finish());
        let mut uns = fb.create_group("uns");
        uns.set_attr("a_number", AttrValue::F64(0.5));
        uns.set_attr("ascii", AttrValue::AsciiString("m/s".into()));
        uns.set_attr("sized", AttrValue::string_sized("ok", 8).unwrap());
        uns.create_dataset("scalar").with_i64_data(&[42]).with_shape(&[]);
        uns.create_dataset("fixed").with_ascii_strings(&["a", "bcd"]).unwrap();
        uns.create_dataset("empty").with_dtype(hdf5_pure::make_f64_type()).with_shape(&[0]);
        let be = Datatype::FixedPoint {
            size: 8,
            byte_order: DatatypeByteOrder::BigEndian,
            layout: match make_i64_type() {
                Datatype::FixedPoint { layout, .. } => layout,
                _ => unreachable!(),
            },
        };
        uns.create_dataset("big_endian").with_raw_data(be, (1u64..=4).flat_map(|v| v.to_be_bytes()).collect(), 4).with_shape(&[2, 2]);
        let rec = CompoundTypeBuilder::new().i32_field("a").f64_field("b").build().unwrap();
        let raw: Vec<u8> = (0..3i32).flat_map(|i| [i.to_le_bytes().to_vec(), (f64::from(i) / 2.0).to_le_bytes().to_vec()].concat()).collect();
        uns.create_dataset("records").with_compound_data(rec, raw, 3);
        let flag = EnumTypeBuilder::with_base(hdf5_pure::make_i8_type()).value("FALSE", 0).value("TRUE", 1).build().unwrap();
        uns.create_dataset("flags").with_enum_u8_data(flag, &[1, 0, 1]);
        let mut nested = uns.create_group("nested");
        nested.create_dataset("lzf").with_u16_data(&[1, 2, 3, 4]).with_chunks(&[2]).with_lzf().with_fletcher32();
        uns.add_group(nested.finish());
        fb.add_group(uns.finish());
        fb.finish().unwrap()
    }

    fn additions(n: usize) -> H5adAdditions {
        let labels = (0..n).map(|i| if i % 4 == 3 { None } else { Some(["NK", "B cell", "Mono"][i % 3].to_string()) }).collect();
        H5adAdditions {
            obs: vec![
                ("scNym".into(), ObsValues::Categorical(labels)),
                ("scNym_confidence".into(), ObsValues::F32((0..n).map(|i| i as f32 / n as f32).collect())),
                (
                    "scNym_class".into(),
                    ObsValues::CategoricalCodes { categories: vec!["z".into(), "a".into()], codes: (0..n).map(|i| i as i32 % 3 - 1).collect() },
                ),
                ("scNym_rank".into(), ObsValues::I32((0..n).map(|i| i as i32 - 2).collect())),
                ("scNym_confident".into(), ObsValues::Bool((0..n).map(|i| i % 2 == 0).collect())),
            ],
            obsm: vec![("X_scnym".into(), DenseF32 { n_cols: 3, values: (0..n * 3).map(|i| i as f32 * 0.25).collect() })],
        }
    }

    /// Every object path of a file (groups end in '/').
    fn paths(f: &File) -> BTreeSet<String> {
        fn walk(g: &Group, path: &str, out: &mut BTreeSet<String>) {
            for d in g.datasets().unwrap() {
                out.insert(child(path, &d));
            }
            for name in g.groups().unwrap() {
                let p = child(path, &name);
                out.insert(format!("{p}/"));
                walk(&g.group(&name).unwrap(), &p, out);
            }
        }
        let mut out = BTreeSet::new();
        walk(&f.root(), "", &mut out);
        out
    }

    /// The whole contract on one file: the additions are there and read back, and everything
    /// else is identical (datatypes, shapes, layouts, attributes, decoded values).
    fn check_annotated(src_bytes: &[u8], out: Vec<u8>, add: &H5adAdditions, file: &str) {
        let src = File::from_bytes(src_bytes.to_vec()).unwrap();
        let out_file = File::from_bytes(out.clone()).unwrap();
        let changes = Changes {
            replaced: add.obs.iter().map(|(n, _)| format!("obs/{n}")).chain(add.obsm.iter().map(|(n, _)| format!("obsm/{n}"))).collect(),
            attrs: [("obs".to_string(), "column-order".to_string())].into(),
        };
        compare(&src, &out_file, &changes, true).unwrap_or_else(|(p, e)| panic!("{file}: {p}: {e}"));
        // Only the additions are new.
        let (before, after) = (paths(&src), paths(&out_file));
        let mut expected: BTreeSet<String> =
            before.iter().filter(|p| !changes.replaced.iter().any(|r| *p == r || p.starts_with(&format!("{r}/")))).cloned().collect();
        for (name, v) in &add.obs {
            if let ObsValues::Categorical(_) | ObsValues::CategoricalCodes { .. } = v {
                expected.extend([format!("obs/{name}/"), format!("obs/{name}/categories"), format!("obs/{name}/codes")]);
            } else {
                expected.insert(format!("obs/{name}"));
            }
        }
        expected.insert("obsm/".into());
        expected.extend(add.obsm.iter().map(|(n, _)| format!("obsm/{n}")));
        assert_eq!(after, expected, "{file}: objects");
        // The obsm matrix and the new columns as written.
        for (name, m) in &add.obsm {
            let ds = out_file.dataset(&format!("obsm/{name}")).unwrap();
            assert_eq!(ds.shape().unwrap(), vec![(m.values.len() / m.n_cols) as u64, m.n_cols as u64]);
            assert_eq!(ds.read_f32().unwrap(), m.values);
        }
        let ad = read_h5ad(&out, file).unwrap_or_else(|e| panic!("{file}: {e}"));
        check_added_columns(&ad, add, file);
        let order = out_file.group("obs").unwrap().attrs().unwrap()["column-order"].as_strings().unwrap().to_vec();
        let before = src.group("obs").unwrap().attrs().unwrap().get("column-order").and_then(|v| v.as_strings().map(<[String]>::to_vec)).unwrap_or_default();
        let mut want = before.clone();
        want.extend(add.obs.iter().map(|(n, _)| n.clone()).filter(|n| !before.contains(n)));
        assert_eq!(order, want, "{file}: column-order");
    }

    /// The new obs columns as this crate's reader reads them back.
    fn check_added_columns(ad: &AnnData, add: &H5adAdditions, file: &str) {
        for (name, v) in &add.obs {
            let col = ad.obs.get(name).unwrap_or_else(|e| panic!("{file}: {e}"));
            match (v, col) {
                (ObsValues::Categorical(labels), Column::Categorical { codes, categories }) => {
                    let got: Vec<Option<String>> = codes.iter().map(|&c| (c >= 0).then(|| categories[c as usize].clone())).collect();
                    assert_eq!(&got, labels);
                }
                (ObsValues::CategoricalCodes { categories: c, codes: k }, Column::Categorical { codes, categories }) => {
                    assert_eq!((codes, categories), (k, c));
                }
                (ObsValues::F32(want), Column::Numeric(got)) => assert_eq!(got, &want.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
                (ObsValues::I32(want), Column::Numeric(got)) => assert_eq!(got, &want.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
                (ObsValues::Bool(want), Column::Bool(got)) => assert_eq!(got, want),
                _ => panic!("{file}: column {name} read back as {col:?}"),
            }
        }
    }

    #[test]
    fn h5ad_export_small_file_round_trip() {
        let src = small_h5ad();
        let add = additions(5);
        let out = annotate_h5ad(src.clone(), "small.h5ad", &add).unwrap();
        check_annotated(&src, out.clone(), &add, "small.h5ad");
        // Annotating again replaces the columns rather than adding them twice.
        let mut again = additions(5);
        again.obs[1].1 = ObsValues::F32(vec![9.0; 5]);
        let out2 = annotate_h5ad(out.clone(), "small.h5ad", &again).unwrap();
        check_annotated(&out, out2.clone(), &again, "small.h5ad");
        let f = File::from_bytes(out2).unwrap();
        assert_eq!(f.dataset("obs/scNym_confidence").unwrap().read_f32().unwrap(), vec![9.0; 5]);
    }

    /// Files h5py wrote (the fuzz seeds, made the way anndata writes) take the additions appended:
    /// the source's bytes stay as they were but one run of the superblock, the tail is about the
    /// additions' size, the whole contract holds, and annotating the output again appends again.
    /// A file hdf5-pure wrote (a latest-format superblock) is rewritten instead, saying why.
    #[test]
    fn h5ad_export_appends_to_files_h5py_wrote() {
        for file in ["csr_gzip.h5ad", "dense.h5ad", "dense.h5ad with a userblock"] {
            let mut bytes =
                std::fs::read(format!("{}/tests/fixtures/fuzz/{}", env!("CARGO_MANIFEST_DIR"), &file[..file.find(' ').unwrap_or(file.len())])).unwrap();
            if file.ends_with("userblock") {
                bytes = with_userblock(bytes);
            }
            let n = n_obs(&bytes);
            let add = additions(n);
            let Annotation::Appended(appended) = annotate_h5ad_appending(SharedBytes(Arc::new(bytes.clone())), file, &add).unwrap() else {
                panic!("{file}: not appended")
            };
            let [(at, patch)] = &appended.patches[..] else { panic!("{file}: {} patches", appended.patches.len()) };
            let (at, end) = (*at as usize, *at as usize + patch.len());
            let base = File::from_bytes(bytes.clone()).unwrap().superblock().base_address.get() as usize;
            assert!(end <= base + 128, "{file}: the patch ({at}..{end}) is the superblock's");
            // The end-of-file address is absolute (the userblock counted), as libhdf5 writes it.
            assert_eq!(u64::from_le_bytes(patch[..8].try_into().unwrap()), (bytes.len() + appended.tail.len()) as u64, "{file}");
            assert!(appended.tail.len() < 48 << 10, "{file}: {} bytes appended", appended.tail.len());
            let mut out = bytes.clone();
            appended.apply_to(&mut out);
            assert_eq!((&out[..at], &out[end..bytes.len()]), (&bytes[..at], &bytes[end..]), "{file}: the source's bytes are kept");
            assert_eq!(annotate_h5ad(bytes.clone(), file, &add).unwrap(), out, "{file}: annotate_h5ad appends too");
            check_annotated(&bytes, out.clone(), &add, file);
            let mut again = additions(n);
            again.obs[1].1 = ObsValues::F32(vec![9.0; n]);
            let out2 = annotate_h5ad(out.clone(), file, &again).unwrap();
            assert!(out2.len() < out.len() + (48 << 10) && out2[base..base + 128] != out[base..base + 128], "{file}: appended again");
            check_annotated(&out, out2, &again, file);
        }
        match annotate_h5ad_appending(SharedBytes(Arc::new(small_h5ad())), "small.h5ad", &additions(5)).unwrap() {
            Annotation::Rewrite(why) => assert!(why.contains("superblock"), "{why}"),
            Annotation::Appended(_) => panic!("hdf5-pure's latest-format file was appended to"),
        }
    }

    /// `bytes` (a file with no userblock) behind a 512-byte userblock, as `h5py.File(userblock_size=512)`
    /// lays it out: addresses stay relative to the superblock, whose base address becomes 512 and
    /// whose end-of-file address (absolute) grows by 512.
    fn with_userblock(bytes: Vec<u8>) -> Vec<u8> {
        assert_eq!(bytes[8], 0, "a version-0 superblock");
        let mut out = b"sclabel test userblock".to_vec();
        out.resize(512, 0);
        out.extend_from_slice(&bytes);
        out[512 + 24..512 + 32].copy_from_slice(&512u64.to_le_bytes());
        let eof = u64::from_le_bytes(out[512 + 40..512 + 48].try_into().unwrap());
        out[512 + 40..512 + 48].copy_from_slice(&(eof + 512).to_le_bytes());
        out
    }

    /// A scratch file under target/tmp (tests run in parallel: each names its own).
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/h5ad_export");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// In place in a copy: the same contract as rebuilding, the input untouched, a second
    /// annotation replacing the first, and the input never the output.
    #[test]
    fn h5ad_export_copy_edited_in_place() {
        let (input, output, again) = (scratch("copy_in.h5ad"), scratch("copy_out.h5ad"), scratch("copy_again.h5ad"));
        let src = small_h5ad();
        let _ = std::fs::remove_file(&input);
        std::fs::write(&input, &src).unwrap();
        // A read-only input (its copy is made writable for the editor).
        let mut ro = std::fs::metadata(&input).unwrap().permissions();
        ro.set_readonly(true);
        std::fs::set_permissions(&input, ro).unwrap();
        let add = additions(5);
        annotate_h5ad_copy(&input, &output, &add).unwrap();
        assert_eq!(std::fs::read(&input).unwrap(), src, "the input is unchanged");
        let out = std::fs::read(&output).unwrap();
        check_annotated(&src, out.clone(), &add, "small.h5ad");
        let mut second = additions(5);
        second.obs[1].1 = ObsValues::F32(vec![9.0; 5]);
        annotate_h5ad_copy(&output, &again, &second).unwrap();
        check_annotated(&out, std::fs::read(&again).unwrap(), &second, "small.h5ad");
        let e = annotate_h5ad_copy(&input, &input, &add).unwrap_err();
        assert_eq!(e.code(), "invalid_option", "{e}");
        // Nor through a hard link to it.
        let link = scratch("copy_link.h5ad");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&input, &link).unwrap();
        let e = annotate_h5ad_copy(&input, &link, &add).unwrap_err();
        assert_eq!(e.code(), "invalid_option", "{e}");
        assert_eq!(std::fs::read(&input).unwrap(), src);
        // Wrong lengths are refused before anything is written.
        let _ = std::fs::remove_file(&again);
        let e = annotate_h5ad_copy(&input, &again, &additions(4)).unwrap_err();
        assert_eq!(e.code(), "shape_mismatch", "{e}");
        assert!(!again.exists());
        let temps = std::fs::read_dir(input.parent().unwrap()).unwrap().flatten().filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.contains(".sclabel-") && (n.contains("copy_out") || n.contains("copy_again"))
        });
        assert_eq!(temps.count(), 0, "no temporary file is left");
    }

    /// A group linked inside itself (uns/loop → the root, written by h5py) reads, but neither
    /// export walks it without end: both refuse it, naming the path, and leave no file.
    #[test]
    fn h5ad_export_link_cycles_are_refused() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/link_cycle.h5ad")).unwrap();
        assert_eq!(read_h5ad(&bytes, "link_cycle.h5ad").unwrap().n_obs(), 3);
        let add = additions(3);
        let e = annotate_h5ad(bytes.clone(), "link_cycle.h5ad", &add).unwrap_err();
        assert_eq!(e.code(), "unsupported_layout", "{e}");
        assert!(e.to_string().contains("cycle") && e.to_string().contains("uns/loop"), "{e}");
        let (input, output) = (scratch("cycle_in.h5ad"), scratch("cycle_out.h5ad"));
        std::fs::write(&input, &bytes).unwrap();
        let _ = std::fs::remove_file(&output);
        let e = annotate_h5ad_copy(&input, &output, &add).unwrap_err();
        assert_eq!(e.code(), "unsupported_layout", "{e}");
        assert!(e.to_string().contains("cycle"), "{e}");
        assert!(!output.exists());
    }

    /// The anndata ≤ 0.6 layout needs its tables converted: refused here (the CLI then rebuilds
    /// the file in memory), leaving no copy behind.
    #[test]
    fn h5ad_export_copy_refuses_the_legacy_layout() {
        let (input, output) = (scratch("legacy_in.h5ad"), scratch("legacy_out.h5ad"));
        std::fs::write(&input, legacy_h5ad([0, 1, -1, 1, 0], None)).unwrap();
        let _ = std::fs::remove_file(&output);
        let e = annotate_h5ad_copy(&input, &output, &additions(5)).unwrap_err();
        assert_eq!(e.code(), "unsupported_layout", "{e}");
        assert!(e.to_string().contains("0.6"), "{e}");
        assert!(!output.exists());
    }

    /// Files h5py wrote (version-0 superblocks, which hdf5-pure edits through a whole-file mirror)
    /// annotated in place meet the whole contract, values included.
    #[test]
    #[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
    fn h5ad_export_copy_shared_data_sets() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");
        for (file, bytes) in shared_files() {
            if File::from_bytes(bytes.clone()).unwrap().dataset("obs").is_ok() {
                continue; // anndata ≤ 0.6: refused in place (tested above)
            }
            let output = scratch(&format!("shared_{file}"));
            let add = additions(n_obs(&bytes));
            annotate_h5ad_copy(std::path::Path::new(&format!("{dir}/{file}")), &output, &add).unwrap_or_else(|e| panic!("{file}: {e}"));
            check_annotated(&bytes, std::fs::read(&output).unwrap(), &add, &file);
            std::fs::remove_file(&output).unwrap();
        }
    }

    /// The shared data sets beside the project. The tests that read them are ignored where they
    /// are absent (build.rs sets `shared_data`), so here they must be there.
    fn shared_files() -> Vec<(String, Vec<u8>)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("../shared/data (the shared data sets beside the project): {e}"));
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "h5ad")).collect();
        files.sort();
        files.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
    }

    fn n_obs(bytes: &[u8]) -> usize {
        read_h5ad(bytes, "n_obs").map(|ad| ad.obs_names.len()).unwrap()
    }

    #[test]
    #[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
    fn h5ad_export_shared_data_sets() {
        for (file, bytes) in shared_files() {
            let n = n_obs(&bytes);
            let add = additions(n);
            let t = std::time::Instant::now();
            let out = annotate_h5ad(bytes.clone(), &file, &add).unwrap_or_else(|e| panic!("{file}: {e}"));
            eprintln!("{file}: {} → {} bytes in {:.2?}", bytes.len(), out.len(), t.elapsed());
            if File::from_bytes(bytes.clone()).unwrap().dataset("obs").is_ok() {
                // anndata ≤ 0.6 (pbmc68k_reduced): converted.
                check_legacy_annotated(&bytes, out, &add, &file);
            } else {
                check_annotated(&bytes, out, &add, &file);
            }
        }
    }

    #[test]
    #[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
    fn h5ad_export_pure_rewrite_of_the_legacy_layout() {
        // No additions: a plain rewrite, which the anndata ≤ 0.6 compound tables get too.
        for (file, bytes) in shared_files().into_iter().filter(|(f, _)| f == "pbmc68k_reduced.h5ad") {
            let out = annotate_h5ad(bytes.clone(), &file, &H5adAdditions::default()).unwrap();
            let (a, b) = (File::from_bytes(bytes).unwrap(), File::from_bytes(out).unwrap());
            let none = Changes { replaced: BTreeSet::new(), attrs: BTreeSet::new() };
            compare(&a, &b, &none, true).unwrap_or_else(|(p, e)| panic!("{file}: {p}: {e}"));
            assert_eq!(paths(&a), paths(&b));
        }
    }

    fn fixed(size: u32) -> Datatype {
        Datatype::String { size, padding: StringPadding::NullPad, charset: CharacterSet::Ascii }
    }

    fn bool_type() -> Datatype {
        EnumTypeBuilder::with_base(hdf5_pure::make_i8_type()).value("FALSE", 0).value("TRUE", 1).build().unwrap()
    }

    fn padded(s: &str, size: usize) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        b.resize(size, 0);
        b
    }

    /// A compound dataset of `fields` (name, datatype, each record's bytes), chunked and deflated
    /// as h5py wrote anndata ≤ 0.6 tables.
    fn compound(db: &mut DatasetBuilder, fields: Vec<(&str, Datatype, Vec<Vec<u8>>)>, chunk: u64) {
        let n = fields[0].2.len();
        let mut builder = CompoundTypeBuilder::new();
        for (name, dt, _) in &fields {
            builder = builder.field(name, dt.clone());
        }
        let raw: Vec<u8> = (0..n).flat_map(|i| fields.iter().flat_map(move |(_, _, v)| v[i].clone())).collect();
        db.with_compound_data(builder.build().unwrap(), raw, n as u64).with_chunks(&[chunk]).with_deflate(4);
    }

    /// An AnnData in the anndata ≤ 0.6 layout (as scanpy's pbmc68k_reduced): obs, var, obsm,
    /// varm and raw.var compound tables, categories in uns, raw.X in h5sparse form. `codes` are
    /// obs's `cell_type` codes (2 categories); `extra` is one more obs field (same bytes each row).
    fn legacy_h5ad(codes: [i8; 5], extra: Option<(&str, Datatype, Vec<u8>)>) -> Vec<u8> {
        let n = 5;
        let mut fb = FileBuilder::new();
        let x: Vec<f32> = (0..n * 4).map(|i| (i % 3) as f32).collect();
        fb.create_dataset("X").with_f32_data(&x).with_shape(&[n as u64, 4]).with_chunks(&[2, 4]).with_deflate(4);
        let mut obs = vec![
            ("index", fixed(4), (0..n).map(|i| padded(&format!("c{i}"), 4)).collect::<Vec<_>>()),
            ("cell_type", hdf5_pure::make_i8_type(), codes.iter().map(|c| c.to_le_bytes().to_vec()).collect()),
            ("n_counts", hdf5_pure::make_f32_type(), [1.0f32, 2.5, f32::NAN, 4.0, 5.0].iter().map(|v| v.to_le_bytes().to_vec()).collect()),
            ("ok", bool_type(), [1u8, 0, 1, 1, 0].iter().map(|&b| vec![b]).collect()),
            ("batch", fixed(3), ["a", "bb", "a", "ccc", "bb"].iter().map(|s| padded(s, 3)).collect()),
            ("n_genes", make_i64_type(), (0..n as i64).map(|i| (100 * i).to_le_bytes().to_vec()).collect()),
        ];
        if let Some((name, dt, bytes)) = extra {
            obs.push((name, dt, vec![bytes; n]));
        }
        compound(fb.create_dataset("obs"), obs, 2);
        let f4x3 = Datatype::Array { base_type: Box::new(hdf5_pure::make_f32_type()), dimensions: vec![3] };
        let f8x2 = Datatype::Array { base_type: Box::new(hdf5_pure::make_f64_type()), dimensions: vec![2] };
        compound(
            fb.create_dataset("obsm"),
            vec![
                ("X_pca", f4x3, (0..n).map(|i| (0..3).flat_map(|j| (i as f32 + j as f32 / 4.0).to_le_bytes()).collect()).collect()),
                ("X_umap", f8x2, (0..n).map(|i| (0..2).flat_map(|j| (i as f64 * 10.0 + j as f64).to_le_bytes()).collect()).collect()),
            ],
            2,
        );
        compound(
            fb.create_dataset("var"),
            vec![
                ("index", fixed(3), (0..4).map(|i| padded(&format!("g{i}"), 3)).collect()),
                ("means", hdf5_pure::make_f64_type(), (0..4).map(|i| (f64::from(i) / 3.0).to_le_bytes().to_vec()).collect()),
                ("highly_variable", bool_type(), [1u8, 0, 0, 1].iter().map(|&b| vec![b]).collect()),
                ("kind", hdf5_pure::make_i16_type(), [0i16, 1, -1, 1].iter().map(|c| c.to_le_bytes().to_vec()).collect()),
            ],
            4,
        );
        let pcs = Datatype::Array { base_type: Box::new(hdf5_pure::make_f64_type()), dimensions: vec![2] };
        compound(fb.create_dataset("varm"), vec![("PCs", pcs, (0..4).map(|i| (0..2).flat_map(|j| f64::from(i * 2 + j).to_le_bytes()).collect()).collect())], 4);
        let mut raw_x = fb.create_group("raw.X");
        raw_x.set_attr("h5sparse_format", AttrValue::AsciiString("csr".into()));
        raw_x.set_attr("h5sparse_shape", AttrValue::I64Array(vec![n as i64, 3]));
        raw_x.create_dataset("data").with_f32_data(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        raw_x.create_dataset("indices").with_i32_data(&[0, 2, 1, 0, 2]);
        raw_x.create_dataset("indptr").with_i32_data(&[0, 1, 2, 3, 4, 5]);
        fb.add_group(raw_x.finish());
        compound(fb.create_dataset("raw.var"), vec![("index", fixed(3), (0..3).map(|i| padded(&format!("r{i}"), 3)).collect())], 3);
        let mut uns = fb.create_group("uns");
        uns.create_dataset("cell_type_categories").with_ascii_strings(&["B", "T"]).unwrap();
        uns.create_dataset("cell_type_colors").with_ascii_strings(&["#ff0000", "#00ff00"]).unwrap();
        uns.create_dataset("kind_categories").with_ascii_strings(&["x", "y"]).unwrap();
        // No column of that name: stays in uns.
        uns.create_dataset("other_categories").with_ascii_strings(&["p"]).unwrap();
        let mut params = uns.create_group("params");
        params.create_dataset("n_neighbors").with_i64_data(&[15]);
        uns.add_group(params.finish());
        fb.add_group(uns.finish());
        fb.finish().unwrap()
    }

    /// The fields of compound dataset `path`: each member and its bytes in every record.
    fn compound_fields(f: &File, path: &str) -> Vec<(CompoundMember, Vec<u8>)> {
        let ds = f.dataset(path).unwrap();
        let Datatype::Compound { size, members } = ds.datatype().unwrap() else { panic!("{path} is not a compound dataset") };
        let raw = ds.read_raw().unwrap();
        members
            .into_iter()
            .map(|m| {
                let (off, w) = (m.byte_offset as usize, m.datatype.type_size() as usize);
                let bytes = raw.chunks_exact(size as usize).flat_map(|r| r[off..off + w].to_vec()).collect();
                (m, bytes)
            })
            .collect()
    }

    /// The contract on a file in the anndata ≤ 0.6 layout: obs, var and obsm converted with every
    /// field's bytes and datatype as they were, categoricals from uns (and gone from uns), the
    /// additions there, everything else identical, and this crate's reader reading the same data.
    fn check_legacy_annotated(src_bytes: &[u8], out: Vec<u8>, add: &H5adAdditions, file: &str) {
        let src = File::from_bytes(src_bytes.to_vec()).unwrap();
        let dst = File::from_bytes(out.clone()).unwrap();
        let text = |g: &Group, k: &str| g.attrs().unwrap().get(k).and_then(|v| v.as_str().map(str::to_string));
        let uns_names = src.group("uns").and_then(|g| g.datasets()).unwrap_or_default();
        let added = |name: &str| add.obs.iter().any(|(n, _)| n == name);
        let mut consumed = BTreeSet::new();
        let mut converted = vec!["obs".to_string(), "obsm".to_string()];
        for frame in ["obs", "var"] {
            if src.dataset(frame).is_err() {
                continue;
            }
            converted.push(frame.into());
            let fields = compound_fields(&src, frame);
            let g = dst.group(frame).unwrap_or_else(|e| panic!("{file}: {frame}: {e}"));
            assert_eq!(text(&g, "encoding-type").as_deref(), Some("dataframe"), "{file}: {frame}");
            assert_eq!(text(&g, "encoding-version").as_deref(), Some("0.2.0"), "{file}: {frame}");
            assert_eq!(text(&g, "_index").as_deref(), Some("_index"), "{file}: {frame}");
            let (index, rest) = fields.split_first().unwrap();
            let ds = g.dataset("_index").unwrap();
            assert_eq!((ds.datatype().unwrap(), ds.read_raw().unwrap()), (index.0.datatype.clone(), index.1.clone()), "{file}: {frame}/_index");
            assert_eq!(text_of(&ds, "encoding-type").as_deref(), Some("string-array"));
            let mut order: Vec<String> = rest.iter().map(|(m, _)| m.name.clone()).collect();
            if frame == "obs" {
                let new: Vec<String> = add.obs.iter().map(|(n, _)| n.clone()).filter(|n| !order.contains(n)).collect();
                order.extend(new);
            }
            let got = g.attrs().unwrap()["column-order"].as_strings().map(<[String]>::to_vec).unwrap_or_default();
            assert_eq!(got, order, "{file}: {frame} column-order");
            for (m, bytes) in rest {
                let cats = format!("{}_categories", m.name);
                let categorical = matches!(m.datatype, Datatype::FixedPoint { .. }) && uns_names.contains(&cats);
                if frame == "obs" && added(&m.name) {
                    // Replaced by an addition; its categories leave uns with it.
                    if categorical {
                        consumed.insert(cats);
                    }
                    continue;
                }
                let p = format!("{frame}/{}", m.name);
                let ds = if categorical {
                    let cg = g.group(&m.name).unwrap_or_else(|e| panic!("{file}: {p} is no categorical: {e}"));
                    assert_eq!(text(&cg, "encoding-type").as_deref(), Some("categorical"), "{file}: {p}");
                    let (a, b) = (src.dataset(&format!("uns/{cats}")).unwrap(), cg.dataset("categories").unwrap());
                    assert_eq!((a.datatype().unwrap(), a.read_raw().unwrap()), (b.datatype().unwrap(), b.read_raw().unwrap()), "{file}: {p} categories");
                    assert_eq!(text_of(&b, "encoding-type").as_deref(), Some("string-array"), "{file}: {p}");
                    consumed.insert(cats);
                    cg.dataset("codes").unwrap()
                } else {
                    g.dataset(&m.name).unwrap_or_else(|e| panic!("{file}: {p}: {e}"))
                };
                assert_eq!(ds.datatype().unwrap(), m.datatype, "{file}: {p}");
                assert_eq!(&ds.read_raw().unwrap(), bytes, "{file}: {p}");
                let want = if matches!(m.datatype, Datatype::String { .. }) { "string-array" } else { "array" };
                assert_eq!(text_of(&ds, "encoding-type").as_deref(), Some(want), "{file}: {p}");
            }
        }
        // obsm: each array field an n × k matrix of its base type, then the additions.
        let n = compound_fields(&src, "obs")[0].1.len() as u64 / u64::from(compound_fields(&src, "obs")[0].0.datatype.type_size());
        let g = dst.group("obsm").unwrap();
        assert_eq!(text(&g, "encoding-type").as_deref(), Some("dict"), "{file}: obsm");
        if src.dataset("obsm").is_ok() {
            for (m, bytes) in compound_fields(&src, "obsm") {
                if add.obsm.iter().any(|(a, _)| *a == m.name) {
                    continue;
                }
                let Datatype::Array { base_type, dimensions } = &m.datatype else { panic!("{file}: obsm/{} is no array field", m.name) };
                let ds = g.dataset(&m.name).unwrap();
                let shape: Vec<u64> = std::iter::once(n).chain(dimensions.iter().map(|&d| u64::from(d))).collect();
                assert_eq!((ds.shape().unwrap(), ds.datatype().unwrap()), (shape, (**base_type).clone()), "{file}: obsm/{}", m.name);
                assert_eq!(ds.read_raw().unwrap(), bytes, "{file}: obsm/{}", m.name);
            }
        }
        for (name, m) in &add.obsm {
            let ds = g.dataset(name).unwrap();
            assert_eq!(ds.shape().unwrap(), vec![n, m.n_cols as u64], "{file}: obsm/{name}");
            assert_eq!(ds.read_f32().unwrap(), m.values, "{file}: obsm/{name}");
        }
        // uns lost exactly the categories taken into columns.
        let left: BTreeSet<String> = dst.group("uns").and_then(|g| g.datasets()).unwrap_or_default().into_iter().collect();
        let want: BTreeSet<String> = uns_names.iter().filter(|n| !consumed.contains(*n)).cloned().collect();
        assert_eq!(left, want, "{file}: uns");
        // Everything else identical, object by object.
        let mut replaced: BTreeSet<String> = converted.iter().cloned().collect();
        replaced.extend(consumed.iter().map(|c| format!("uns/{c}")));
        compare(&src, &dst, &Changes { replaced: replaced.clone(), attrs: BTreeSet::new() }, true).unwrap_or_else(|(p, e)| panic!("{file}: {p}: {e}"));
        let outside = |paths: BTreeSet<String>| -> BTreeSet<String> {
            paths.into_iter().filter(|p| !replaced.iter().any(|r| p == r || p.starts_with(&format!("{r}/")))).collect()
        };
        assert_eq!(outside(paths(&src)), outside(paths(&dst)), "{file}: objects");
        // The same AnnData for this crate's reader, plus the additions.
        let (a, b) = (read_h5ad(src_bytes, file).unwrap(), read_h5ad(&out, file).unwrap_or_else(|e| panic!("{file}: {e}")));
        assert_eq!(a.obs_names, b.obs_names, "{file}");
        assert_eq!(a.var_names, b.var_names, "{file}");
        assert!(same_matrix(&a.x, &b.x), "{file}: X");
        assert_eq!(a.raw.is_some(), b.raw.is_some(), "{file}: raw");
        if let (Some(x), Some(y)) = (&a.raw, &b.raw) {
            assert!(x.var_names == y.var_names && same_matrix(&x.x, &y.x), "{file}: raw");
        }
        for (name, col) in &a.obs.columns {
            if !added(name) {
                assert!(same_column(col, b.obs.get(name).unwrap()), "{file}: obs/{name}");
            }
        }
        check_added_columns(&b, add, file);
    }

    fn text_of(ds: &Dataset, k: &str) -> Option<String> {
        ds.attrs().unwrap().get(k).and_then(|v| v.as_str().map(str::to_string))
    }

    /// `additions(n)` and an n × 8 obsm matrix.
    fn wide_additions(n: usize) -> H5adAdditions {
        let mut add = additions(n);
        add.obsm.push(("X_wide".into(), DenseF32 { n_cols: 8, values: (0..n * 8).map(|i| i as f32 / 8.0).collect() }));
        add
    }

    #[test]
    fn h5ad_export_legacy_layout_is_converted() {
        let src = legacy_h5ad([0, 1, 1, -1, 0], None);
        let add = wide_additions(5);
        let out = annotate_h5ad(src.clone(), "legacy.h5ad", &add).unwrap_or_else(|e| panic!("{e}"));
        check_legacy_annotated(&src, out.clone(), &add, "legacy.h5ad");
        let ad = read_h5ad(&out, "legacy.h5ad").unwrap();
        assert_eq!(ad.obs_names, ["c0", "c1", "c2", "c3", "c4"]);
        assert_eq!(ad.obs.get("cell_type").unwrap(), &Column::Categorical { codes: vec![0, 1, 1, -1, 0], categories: vec!["B".into(), "T".into()] });
        assert_eq!(ad.obs.get("batch").unwrap(), &Column::Strings(["a", "bb", "a", "ccc", "bb"].map(String::from).to_vec()));
        assert_eq!(ad.obs.get("ok").unwrap(), &Column::Bool(vec![true, false, true, true, false]));
        let f = File::from_bytes(out.clone()).unwrap();
        // var's categorical too, and the storage of the old tables.
        assert_eq!(f.dataset("var/kind/codes").unwrap().read_i32().unwrap(), vec![0, 1, -1, 1]);
        assert_eq!(f.dataset("obs/n_counts").unwrap().chunk_shape().unwrap(), Some(vec![2]));
        assert_eq!(f.dataset("obsm/X_pca").unwrap().chunk_shape().unwrap(), Some(vec![2, 3]));
        assert!(f.dataset("uns/other_categories").is_ok() && f.dataset("uns/cell_type_categories").is_err());

        // Annotating the converted file again: a modern file now, written as such.
        let mut again = wide_additions(5);
        again.obs[1].1 = ObsValues::F32(vec![9.0; 5]);
        let out2 = annotate_h5ad(out.clone(), "legacy.h5ad", &again).unwrap();
        check_annotated(&out, out2, &again, "legacy.h5ad");

        // An addition that replaces an old field takes the field's place and its uns categories.
        let add = H5adAdditions {
            obs: vec![("cell_type".into(), ObsValues::Categorical(vec![Some("NK".into()); 5]))],
            obsm: vec![("X_pca".into(), DenseF32 { n_cols: 1, values: vec![0.5; 5] })],
        };
        let out = annotate_h5ad(src.clone(), "legacy.h5ad", &add).unwrap();
        check_legacy_annotated(&src, out.clone(), &add, "legacy.h5ad");
        let f = File::from_bytes(out).unwrap();
        assert_eq!(f.group("obs").unwrap().attrs().unwrap()["column-order"].as_strings().unwrap()[0], "cell_type");
        assert!(f.dataset("uns/cell_type_categories").is_err() && f.dataset("uns/kind_categories").is_err());
        assert_eq!(f.dataset("obsm/X_pca").unwrap().shape().unwrap(), vec![5, 1]);

        // Without additions the old layout is rewritten as it is.
        let out = annotate_h5ad(src.clone(), "legacy.h5ad", &H5adAdditions::default()).unwrap();
        let none = Changes { replaced: BTreeSet::new(), attrs: BTreeSet::new() };
        compare(&File::from_bytes(src).unwrap(), &File::from_bytes(out).unwrap(), &none, true).unwrap();
    }

    #[test]
    fn h5ad_export_legacy_tables_it_cannot_map_are_refused() {
        let add = additions(5);
        let f4x2 = Datatype::Array { base_type: Box::new(hdf5_pure::make_f32_type()), dimensions: vec![2] };
        expect_err(
            legacy_h5ad([0; 5], Some(("vec", f4x2, vec![0; 8]))),
            &add,
            "unsupported_layout",
            &["'obs/vec'", "arrays [2] of float32", "no anndata column encoding", "re-save the file with anndata ≥ 0.8 first"],
        );
        expect_err(
            legacy_h5ad([0, 1, 2, 0, 0], None),
            &add,
            "unsupported_layout",
            &["'obs/cell_type'", "row 2 holds category code 2", "uns/cell_type_categories has 2 categories"],
        );
        expect_err(legacy_h5ad([0, -2, 1, 0, 0], None), &add, "unsupported_layout", &["'obs/cell_type'", "code -2"]);
        let nested = CompoundTypeBuilder::new().i32_field("a").build().unwrap();
        expect_err(legacy_h5ad([0; 5], Some(("rec", nested, vec![0; 4]))), &add, "unsupported_layout", &["'obs/rec'", "a compound type with 1 fields"]);
        expect_err(
            legacy_h5ad([0; 5], Some(("a/b", hdf5_pure::make_f32_type(), vec![0; 4]))),
            &add,
            "unsupported_layout",
            &["'obs/a/b'", "can't name a column"],
        );
        // The same files rewrite fine when nothing is added.
        let f4x2 = Datatype::Array { base_type: Box::new(hdf5_pure::make_f32_type()), dimensions: vec![2] };
        assert!(annotate_h5ad(legacy_h5ad([0, 1, 2, 0, 0], Some(("vec", f4x2, vec![0; 8]))), "t.h5ad", &H5adAdditions::default()).is_ok());
    }

    #[test]
    fn h5ad_export_modern_obs_with_an_old_obsm() {
        // A modern obs beside an anndata ≤ 0.6 obsm: obsm is converted only to take new matrices.
        let n = 5;
        let mut fb = FileBuilder::new();
        fb.create_dataset("X").with_f32_data(&[1.0; 20]).with_shape(&[n as u64, 4]);
        for (frame, names) in [("obs", vec!["c0", "c1", "c2", "c3", "c4"]), ("var", vec!["g0", "g1", "g2", "g3"])] {
            let mut g = fb.create_group(frame);
            set_encoding(&mut g, "dataframe", "0.2.0");
            g.set_attr("_index", AttrValue::VarLenString("_index".into()));
            g.set_attr("column-order", AttrValue::F64Array(vec![]));
            g.create_dataset("_index").with_vlen_strings(&names);
            fb.add_group(g.finish());
        }
        let f4x2 = Datatype::Array { base_type: Box::new(hdf5_pure::make_f32_type()), dimensions: vec![2] };
        compound(
            fb.create_dataset("obsm"),
            vec![("X_pca", f4x2, (0..n).map(|i| [i as f32, -(i as f32)].iter().flat_map(|v| v.to_le_bytes()).collect()).collect())],
            5,
        );
        let src = fb.finish().unwrap();
        let only_obs = H5adAdditions { obsm: vec![], ..additions(n) };
        let out = annotate_h5ad(src.clone(), "t.h5ad", &only_obs).unwrap();
        let f = File::from_bytes(out).unwrap();
        assert!(f.dataset("obsm").is_ok(), "obsm kept as it was");
        let out = annotate_h5ad(src.clone(), "t.h5ad", &additions(n)).unwrap();
        let (a, f) = (File::from_bytes(src).unwrap(), File::from_bytes(out).unwrap());
        let ds = f.dataset("obsm/X_pca").unwrap();
        assert_eq!(ds.shape().unwrap(), vec![5, 2]);
        assert_eq!(ds.read_raw().unwrap(), compound_fields(&a, "obsm")[0].1);
        assert_eq!(f.dataset("obsm/X_scnym").unwrap().shape().unwrap(), vec![5, 3]);
        assert_eq!(f.group("obs").unwrap().attrs().unwrap()["column-order"].as_strings().unwrap().len(), 5);
    }

    /// The demo files the app offers (www/data, fetched by scripts/setup.sh), both in the
    /// anndata ≤ 0.6 layout. Tests using them are ignored without www/data (build.rs).
    fn demo_files() -> Vec<(String, Vec<u8>)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/www/data");
        ["pbmc68k_reduced.h5ad", "pbmc3k_counts.h5ad"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(format!("{dir}/{f}")).unwrap_or_else(|e| panic!("www/data/{f}: {e}"))))
            .collect()
    }

    #[test]
    #[cfg_attr(not(demo_data), ignore = "needs www/data (scripts/setup.sh fetches it)")]
    fn h5ad_export_demo_files_in_the_old_layout() {
        for (file, bytes) in demo_files() {
            let n = n_obs(&bytes);
            let add = wide_additions(n);
            let t = std::time::Instant::now();
            let out = annotate_h5ad(bytes.clone(), &file, &add).unwrap_or_else(|e| panic!("{file}: {e}"));
            eprintln!("{file}: {} → {} bytes in {:.2?}", bytes.len(), out.len(), t.elapsed());
            check_legacy_annotated(&bytes, out.clone(), &add, &file);
            let (a, b) = (read_h5ad(&bytes, &file).unwrap(), read_h5ad(&out, &file).unwrap());
            assert_eq!(a.obs_names, b.obs_names);
            let f = File::from_bytes(out).unwrap();
            if file == "pbmc68k_reduced.h5ad" {
                let (Column::Categorical { codes, categories }, Column::Categorical { codes: c2, categories: k2 }) =
                    (a.obs.get("bulk_labels").unwrap(), b.obs.get("bulk_labels").unwrap())
                else {
                    panic!("bulk_labels is not categorical");
                };
                assert_eq!(categories.len(), 10);
                assert_eq!((codes, categories), (c2, k2));
                assert!(matches!(b.obs.get("n_genes").unwrap(), Column::Numeric(_)));
                assert_eq!(a.obs.get("n_genes").unwrap(), b.obs.get("n_genes").unwrap());
                let src = File::from_bytes(bytes.clone()).unwrap();
                let pca = compound_fields(&src, "obsm").into_iter().find(|(m, _)| m.name == "X_pca").unwrap().1;
                let ds = f.dataset("obsm/X_pca").unwrap();
                assert_eq!(ds.shape().unwrap(), vec![n as u64, 50]);
                assert_eq!(ds.read_raw().unwrap(), pca);
                assert!(f.dataset("uns/bulk_labels_categories").is_err() && f.dataset("uns/bulk_labels_colors").is_ok());
            } else {
                assert_eq!(a.obs.get("barcode").unwrap(), b.obs.get("barcode").unwrap());
            }
            assert_eq!(f.dataset("obsm/X_wide").unwrap().shape().unwrap(), vec![n as u64, 8]);
        }
    }

    fn expect_err(bytes: Vec<u8>, add: &H5adAdditions, code: &str, parts: &[&str]) {
        let e = annotate_h5ad(bytes, "t.h5ad", add).expect_err("should be refused");
        let msg = e.to_string();
        assert_eq!(e.code(), code, "{msg}");
        for p in parts {
            assert!(msg.contains(p), "'{p}' not in: {msg}");
        }
    }

    #[test]
    fn h5ad_export_bad_additions_are_refused() {
        let n = 5;
        let mut add = additions(n);
        add.obs[1].1 = ObsValues::F32(vec![0.0; 4]);
        expect_err(small_h5ad(), &add, "shape_mismatch", &["t.h5ad", "'scNym_confidence'", "4 values", "5 cells"]);
        let mut add = additions(n);
        add.obsm[0].1.n_cols = 4;
        expect_err(small_h5ad(), &add, "shape_mismatch", &["t.h5ad", "'X_scnym'", "15 values", "5 cells × 4 columns need 20"]);
        for (name, why) in [("a/b", "'/'"), ("", "not a usable name"), ("_index", "reserved"), ("scNym", "given twice")] {
            let mut add = additions(n);
            add.obs.push((name.into(), ObsValues::I32(vec![0; n])));
            expect_err(small_h5ad(), &add, "invalid_option", &[&format!("additions.obs['{name}']"), why]);
        }
        let mut add = additions(n);
        add.obsm.push(("X_scnym".into(), DenseF32 { n_cols: 0, values: vec![] }));
        expect_err(small_h5ad(), &add, "invalid_option", &["additions.obsm['X_scnym']", "given twice"]);
        let codes = |categories: &[&str], codes: Vec<i32>| H5adAdditions {
            obs: vec![("c".into(), ObsValues::CategoricalCodes { categories: categories.iter().map(|c| c.to_string()).collect(), codes })],
            obsm: vec![],
        };
        expect_err(small_h5ad(), &codes(&["a", "b"], vec![0, 1, 2, 0, 0]), "invalid_values", &["'c'", "code 2"]);
        expect_err(small_h5ad(), &codes(&["a", "a"], vec![0; 5]), "invalid_values", &["'c'", "'a' appears twice"]);
        // Edge cases that are fine: no columns, no categories, all missing.
        let add = H5adAdditions { obsm: vec![("empty".into(), DenseF32 { n_cols: 0, values: vec![] })], ..codes(&[], vec![-1; 5]) };
        let out = File::from_bytes(annotate_h5ad(small_h5ad(), "t.h5ad", &add).unwrap()).unwrap();
        assert_eq!(out.dataset("obsm/empty").unwrap().shape().unwrap(), vec![5, 0]);
        assert_eq!(out.dataset("obs/c/codes").unwrap().read_i32().unwrap(), vec![-1; 5]);
        assert_eq!(out.dataset("obs/c/categories").unwrap().shape().unwrap(), vec![0]);
    }

    #[test]
    fn h5ad_export_unsupported_files_are_refused() {
        let add = additions(5);
        expect_err(b"not hdf5 at all".to_vec(), &add, "invalid_file", &["t.h5ad", "not an HDF5 file"]);
        let mut cut = small_h5ad();
        cut.truncate(cut.len() - 100);
        expect_err(cut, &add, "invalid_file", &["t.h5ad"]);

        let mut fb = FileBuilder::new();
        fb.create_dataset("X").with_f32_data(&[0.0; 4]).with_shape(&[2, 2]);
        expect_err(fb.finish().unwrap(), &add, "unsupported_layout", &["'obs'", "missing"]);

        // anndata ≤ 0.6: obs is a compound table, but without a string index it isn't converted.
        let mut fb = FileBuilder::new();
        let rec = CompoundTypeBuilder::new().i32_field("index").f64_field("n_counts").build().unwrap();
        fb.create_dataset("obs").with_compound_data(rec, vec![0; 5 * 12], 5);
        expect_err(fb.finish().unwrap(), &add, "unsupported_layout", &["'obs'", "first field is 'index' (int32)", "fixed-length strings"]);

        // Object references can't be carried over; the error names the dataset.
        let mut fb = FileBuilder::new();
        let mut obs = fb.create_group("obs");
        obs.set_attr("_index", AttrValue::VarLenString("_index".into()));
        obs.create_dataset("_index").with_vlen_strings(&["a", "b", "c", "d", "e"]);
        fb.add_group(obs.finish());
        let mut uns = fb.create_group("uns");
        uns.create_dataset("refs").with_path_references(&["obs"]);
        fb.add_group(uns.finish());
        expect_err(fb.finish().unwrap(), &add, "unsupported_layout", &["'uns/refs'", "references"]);
    }

    #[test]
    fn h5ad_export_additions_from_json_keep_their_order() {
        let json = r#"{"obs": {"b": {"categorical": ["x", null]}, "a": {"f32": [1.0, 2]}, "c": {"categorical_codes": {"categories": ["p"], "codes": [0, -1]}}},
                       "obsm": {"X_scnym": {"n_cols": 1, "values": [1, 2]}}}"#;
        let add: H5adAdditions = serde_json::from_str(json).unwrap();
        assert_eq!(add.obs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b", "a", "c"]);
        assert!(matches!(&add.obs[0].1, ObsValues::Categorical(v) if v[1].is_none()));
        assert_eq!(add.obsm[0].1.values, [1.0, 2.0]);
        for bad in [
            r#"{"obs": {"a": {"f64": [1]}}}"#,
            r#"{"obsm": {"m": {"n_cols": 1, "values": [], "dtype": "f4"}}}"#,
            r#"{"var": {}}"#,
            r#"{"obs": {"a": {"i32": [1]}, "a": {"i32": [2]}}}"#,
        ] {
            assert!(serde_json::from_str::<H5adAdditions>(bad).is_err(), "{bad}");
        }
    }

    /// Checks an annotated file with h5py and anndata: every source object identical for h5py
    /// (dtype, shape, chunks, compression, bytes, attributes; h5py bools may come back as int8),
    /// nothing else new, and anndata reads the additions and the same X. Argv: source, output, ….
    const PY_CHECK: &str = r#"
import sys, warnings, numpy as np, h5py, anndata as ad
warnings.simplefilter("ignore")
new_obs, new_obsm = ["scNym", "scNym_confidence", "scNym_class", "scNym_rank", "scNym_confident"], ["X_scnym"]
changed = ["obs/" + c for c in new_obs] + ["obsm/" + c for c in new_obsm]
def check(src, out):
    s, o = h5py.File(src, "r"), h5py.File(out, "r")
    assert s.userblock_size == o.userblock_size and open(src, "rb").read(s.userblock_size) == open(out, "rb").read(o.userblock_size), "userblock"
    def same_attrs(a, b, path):
        assert set(a.attrs) <= set(b.attrs), (path, set(a.attrs) - set(b.attrs))
        for k in a.attrs:
            if (path, k) == ("/obs", "column-order"):
                continue
            ta, tb = a.attrs.get_id(k).dtype, b.attrs.get_id(k).dtype
            va, vb = a.attrs[k], b.attrs[k]
            if ta == np.bool_ and tb != np.bool_:  # rewritten files carry booleans as int8
                assert tb == np.int8 and bool(va) == bool(vb), (path, k, va, vb)
            else:
                assert ta == tb, (path, k, ta, tb)
                assert np.asarray(va).tobytes() == np.asarray(vb).tobytes() if ta.kind != "O" else np.array_equal(va, vb), (path, k, va, vb)
    seen = set()
    def visit(name, a):
        seen.add(name)
        if any(name == c or name.startswith(c + "/") for c in changed):
            return
        b = o[name]
        assert type(a) is type(b), name
        if isinstance(a, h5py.Dataset):
            for prop in ["dtype", "shape", "chunks", "compression", "compression_opts", "shuffle", "fletcher32", "maxshape"]:
                assert getattr(a, prop) == getattr(b, prop), (name, prop, getattr(a, prop), getattr(b, prop))
            va, vb = a[()], b[()]
            if a.dtype.kind == "O":
                assert np.array_equal(va, vb), name
            else:
                assert np.asarray(va).tobytes() == np.asarray(vb).tobytes(), name
        same_attrs(a, b, "/" + name)
    same_attrs(s, o, "/")
    s.visititems(visit)
    added = set()
    o.visit(added.add)
    extra = added - seen - {"obsm"} - set(changed) - {f"obs/{c}/{p}" for c in ["scNym", "scNym_class"] for p in ["categories", "codes"]}
    assert not extra, extra

    a, b = ad.read_h5ad(src), ad.read_h5ad(out)
    n = a.n_obs
    assert list(b.obs.columns) == [c for c in a.obs.columns if c not in new_obs] + new_obs, list(b.obs.columns)
    assert b.obs.drop(columns=new_obs).equals(a.obs.drop(columns=[c for c in new_obs if c in a.obs])), "old obs columns"
    assert (a.obs_names == b.obs_names).all() and (a.var_names == b.var_names).all()
    labels = [None if i % 4 == 3 else ["NK", "B cell", "Mono"][i % 3] for i in range(n)]
    col = b.obs["scNym"]
    assert str(col.dtype) == "category" and list(col.cat.categories) == sorted({l for l in labels if l}), col.cat.categories
    assert [None if isinstance(v, float) else v for v in col.astype(object)] == labels
    assert b.obs["scNym_confidence"].dtype == np.float32
    assert np.array_equal(b.obs["scNym_confidence"].to_numpy(), (np.arange(n, dtype=np.float32) / np.float32(n)).astype(np.float32))
    assert np.array_equal(b.obsm["X_scnym"], (np.arange(n * 3, dtype=np.float32) * np.float32(0.25)).reshape(n, 3))
    codes = np.arange(n) % 3 - 1
    col = b.obs["scNym_class"]
    assert list(col.cat.categories) == ["z", "a"] and np.array_equal(col.cat.codes.to_numpy(), codes), col
    assert b.obs["scNym_rank"].dtype == np.int32 and np.array_equal(b.obs["scNym_rank"].to_numpy(), np.arange(n) - 2)
    assert b.obs["scNym_confident"].dtype == bool and np.array_equal(b.obs["scNym_confident"].to_numpy(), np.arange(n) % 2 == 0)
    X = lambda m: m.toarray() if hasattr(m, "toarray") else np.asarray(m)
    assert type(a.X) is type(b.X) and a.X.dtype == b.X.dtype and np.array_equal(X(a.X), X(b.X)), "X"
    assert sorted(a.uns.keys()) == sorted(b.uns.keys()) and sorted(a.layers.keys()) == sorted(b.layers.keys())
    assert (a.raw is None) == (b.raw is None)
    print("ok", n)

for src, out in zip(sys.argv[1::2], sys.argv[2::2]):
    print(out.rsplit('/', 1)[-1], end=': ')
    check(src, out)
"#;

    /// An AnnData with what anndata writes beyond the shared files (nullable and boolean columns,
    /// string columns, scalars and nested dicts in uns, obsp, layers, varm), gzip and LZF. Argv: dir.
    const PY_GENERATE: &str = r#"
import sys, warnings, numpy as np, pandas as pd, scipy.sparse as sp, anndata as ad
warnings.simplefilter("ignore")
n = 6
a = ad.AnnData(
    X=sp.random(n, 4, density=0.5, format="csr", dtype=np.float32, random_state=0),
    obs=pd.DataFrame({"s": list("abcdef"), "b": [True, False] * 3, "ni": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
                      "nb": pd.array([True, None, False, True, True, False], dtype="boolean"),
                      "cat": pd.Categorical(["x", "y", "x", None, "y", "x"]), "f": np.linspace(0, 1, n)},
                     index=[f"c{i}" for i in range(n)]),
    var=pd.DataFrame({"g": list("pqrs")}, index=[f"g{i}" for i in range(4)]))
a.uns.update(method="wilcoxon", n=3, x=2.5, nested={"arr": np.arange(3), "strs": np.array(["u", "", "w"], dtype=object), "flag": True})
a.obsm["X_pca"] = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
a.obsp["conn"] = sp.identity(n, format="csr")
a.layers["counts"] = a.X.copy()
a.varm["PCs"] = np.ones((4, 2))
a.write_h5ad(sys.argv[1] + "/anndata_gzip.h5ad", compression="gzip")
a.write_h5ad(sys.argv[1] + "/anndata_lzf.h5ad", compression="lzf")
# Wide obs and a root with many links: several symbol table nodes and a two-level B-tree when appended.
w = ad.AnnData(X=np.ones((n, 3), dtype=np.float32), obs=pd.DataFrame({f"col{i:03d}": np.arange(n) * i for i in range(300)}, index=[f"c{i}" for i in range(n)]))
w.uns.update({f"key{i}": i for i in range(40)})
w.write_h5ad(sys.argv[1] + "/anndata_wide.h5ad")
"#;

    #[test]
    #[ignore = "needs python3 with anndata and h5py, and ../shared/data (not on CI machines): cargo test --lib -- --ignored h5ad_export_python"]
    fn h5ad_export_python_anndata_reads_the_output() {
        let ok = std::process::Command::new("python3").args(["-c", "import anndata, h5py"]).output().is_ok_and(|o| o.status.success());
        assert!(ok, "python3 with anndata and h5py is needed (pip install anndata h5py)");
        let dir = std::env::temp_dir().join(format!("sclabel-h5ad-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = std::process::Command::new("python3").arg("-c").arg(PY_GENERATE).arg(&dir).output().unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let mut cases = vec![("small.h5ad".to_string(), small_h5ad())];
        for f in ["anndata_gzip.h5ad", "anndata_lzf.h5ad", "anndata_wide.h5ad"] {
            cases.push((f.to_string(), std::fs::read(dir.join(f)).unwrap()));
        }
        let dense = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz/dense.h5ad")).unwrap();
        cases.push(("dense_userblock.h5ad".into(), with_userblock(dense)));
        cases.extend(shared_files().into_iter().filter(|(f, _)| f != "pbmc68k_reduced.h5ad"));
        let mut args = Vec::new();
        for (file, bytes) in cases {
            let out = annotate_h5ad(bytes.clone(), &file, &additions(n_obs(&bytes))).unwrap();
            let (src_path, out_path) = (dir.join(format!("src-{file}")), dir.join(format!("out-{file}")));
            std::fs::write(&src_path, &bytes).unwrap();
            std::fs::write(&out_path, &out).unwrap();
            args.extend([src_path, out_path]);
        }
        let run = std::process::Command::new("python3").arg("-c").arg(PY_CHECK).args(&args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(run.status.success(), "{text}");
        eprintln!("anndata/h5py:\n{}", text.trim());
    }
}
