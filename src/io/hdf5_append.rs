//! Appends objects to an HDF5 file without rewriting it: new objects go after the file's last byte,
//! and one run of its superblock (end-of-file address and root group entry) is changed to reach
//! them. The output is the source's bytes, that patch, and the tail — so a browser can hand the
//! user a `Blob` made of slices of their own `File` plus a few megabytes, and natively a copy the
//! file system made is patched in place. Memory is the additions and the metadata read, never the
//! file's matrices.
//!
//! hdf5-pure's bounded editor does the same only for v2/v3 superblocks and needs a path; the files
//! h5py (so anndata and scanpy) writes have a v0 superblock, version-1 object headers and
//! symbol-table groups, which is the one layout this module reads and writes.
//!
//! How a group changes: a group is written anew (its object header, B-tree, local heap and symbol
//! table nodes) with links to the *existing* object headers of the children it keeps, its own
//! messages (attributes, modification time …) copied byte for byte but for the ones replaced, and
//! links to the appended children. The root group is rewritten this way too, so the superblock is
//! the only place the old file changes; the old root and obs headers stay in the file, unreachable
//! (what `h5repack` would drop). Variable-length strings go in global heap collections of the tail.
//!
//! Anything else (v2/v3 superblocks, version-2 object headers, groups stored with link messages,
//! 4-byte offsets) is "not appendable", with the reason, and the caller rewrites the file instead.
use std::collections::HashSet;

use hdf5_pure::Source;

/// HDF5's undefined address.
const UNDEF: u64 = u64::MAX;
/// Offsets into a local heap's free list: none (`H5HL_FREE_NULL`).
const FREE_NULL: u64 = 1;
/// A symbol table entry: name offset, object header address, cache type, reserved, scratch pad.
const ENTRY_SIZE: usize = 40;
/// Object header message types read or written here.
const MSG_DATASPACE: u16 = 0x01;
const MSG_LINK_INFO: u16 = 0x02;
const MSG_DATATYPE: u16 = 0x03;
const MSG_FILL_VALUE: u16 = 0x05;
const MSG_LINK: u16 = 0x06;
const MSG_LAYOUT: u16 = 0x08;
const MSG_GROUP_INFO: u16 = 0x0A;
const MSG_ATTRIBUTE: u16 = 0x0C;
const MSG_CONTINUATION: u16 = 0x10;
const MSG_SYMBOL_TABLE: u16 = 0x11;
/// Bounds on a damaged or hostile file's metadata walks: real h5ad metadata is far smaller (an
/// obs of 10,000 columns has a ~200 KB name heap).
const MAX_HEADER_BLOCKS: usize = 4096;
const MAX_BTREE_DEPTH: usize = 64;
const MAX_METADATA_READ: u64 = 64 << 20;
/// Messages a rewritten object header may hold (its count is 16 bits).
const MAX_MESSAGES: usize = 60_000;

/// Why a file can't be appended to; the caller rewrites it instead.
pub type NotAppendable = String;

/// The output of an append: the source with each `(offset, bytes)` of `patches` written over it,
/// then `tail` after its last byte.
#[derive(Debug, Clone)]
pub struct Appended {
    pub patches: Vec<(u64, Vec<u8>)>,
    pub tail: Vec<u8>,
}

impl Appended {
    /// Applies the append to the source's own bytes (which then are the output).
    pub fn apply_to(self, bytes: &mut Vec<u8>) {
        bytes.reserve_exact(self.tail.len());
        for (at, patch) in &self.patches {
            bytes[*at as usize..*at as usize + patch.len()].copy_from_slice(patch);
        }
        bytes.extend_from_slice(&self.tail);
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// `n` bytes at file offset `at`, or why not.
fn read<S: Source + ?Sized>(src: &S, at: u64, n: u64) -> Result<Vec<u8>, NotAppendable> {
    match at.checked_add(n) {
        Some(end) if end <= src.len() => src.read_exact_at(at, n as usize).map_err(|e| format!("reading {n} bytes at {at}: {e}")),
        _ => Err(format!("{n} bytes at {at} run past the end of the file ({} bytes)", src.len())),
    }
}

fn pad8(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(8), 0);
}

// ------------------------------------------------------------------ reading

/// Where the superblock's fields are and what the file's groups look like.
#[derive(Debug, Clone)]
pub struct FileLayout {
    /// File offset that addresses are relative to (the userblock's size).
    base: u64,
    /// File offset of the superblock's base-address field; the end-of-file address is 16 bytes on,
    /// the root group's symbol table entry 32.
    fields_at: u64,
    leaf_k: usize,
    internal_k: usize,
    root_header: u64,
    /// The superblock's driver-info address and the root entry's link-name offset, rewritten as they are.
    driver_info: [u8; 8],
    root_name_offset: [u8; 8],
}

/// A message of a version-1 object header, as stored.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: u16,
    pub flags: u8,
    pub data: Vec<u8>,
}

impl Message {
    /// The attribute's name, for an attribute message.
    pub fn attribute_name(&self) -> Option<&str> {
        if self.kind != MSG_ATTRIBUTE || self.data.len() < 8 {
            return None;
        }
        let len = le_u16(&self.data, 2) as usize;
        let start = match self.data[0] {
            1 | 2 => 8,
            3 => 9,
            _ => return None,
        };
        let name = self.data.get(start..start + len)?;
        std::str::from_utf8(name.strip_suffix(&[0]).unwrap_or(name)).ok()
    }
}

/// A link in a symbol-table group: its name and its symbol table entry as stored.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    raw: [u8; ENTRY_SIZE],
}

impl Entry {
    /// The address of the object it links to.
    pub fn header(&self) -> u64 {
        le_u64(&self.raw, 8)
    }

    /// A link to the dataset whose object header is at `header` (no cached data).
    pub fn dataset(name: &str, header: u64) -> Self {
        let mut raw = [0; ENTRY_SIZE];
        raw[8..16].copy_from_slice(&header.to_le_bytes());
        Entry { name: name.into(), raw }
    }

    /// A link to a written group, with its B-tree and local heap cached as libhdf5 writes them.
    pub fn group(name: &str, g: &WrittenGroup) -> Self {
        let mut raw = [0; ENTRY_SIZE];
        raw[8..16].copy_from_slice(&g.header.to_le_bytes());
        raw[16..20].copy_from_slice(&1u32.to_le_bytes());
        raw[24..32].copy_from_slice(&g.btree.to_le_bytes());
        raw[32..40].copy_from_slice(&g.heap.to_le_bytes());
        Entry { name: name.into(), raw }
    }
}

/// A group as stored: its links and its other messages (attributes and the rest).
#[derive(Debug, Clone)]
pub struct Group {
    pub messages: Vec<Message>,
    pub entries: Vec<Entry>,
}

impl FileLayout {
    /// The superblock of the file `src`, if it is one this module appends to.
    pub fn read<S: Source + ?Sized>(src: &S) -> Result<Self, NotAppendable> {
        let len = src.len();
        let mut at = 0u64;
        let sb_at = loop {
            if at + 8 > len {
                return Err("no HDF5 superblock found".into());
            }
            if read(src, at, 8)? == b"\x89HDF\r\n\x1a\n" {
                break at;
            }
            at = if at == 0 { 512 } else { at * 2 };
        };
        let head = read(src, sb_at, 28)?;
        let version = head[8];
        if version > 1 {
            return Err(format!("a version-{version} superblock (the latest-format files that hdf5-pure's editor changes in place)"));
        }
        if head[13] != 8 || head[14] != 8 {
            return Err(format!("{}-byte addresses and {}-byte lengths (only 8 and 8 are appended to)", head[13], head[14]));
        }
        let fields_at = sb_at + if version == 0 { 24 } else { 28 };
        let fields = read(src, fields_at, 72)?;
        let base = le_u64(&fields, 0);
        if base != sb_at {
            return Err(format!("a base address ({base}) other than the superblock's offset ({sb_at})"));
        }
        let k = |at: usize| le_u16(&head, at) as usize;
        let (leaf_k, internal_k) = (k(16), k(18));
        // Nodes hold 2K entries, counted in 16 bits.
        if leaf_k == 0 || internal_k == 0 || leaf_k > 32_767 || internal_k > 32_767 {
            return Err(format!("symbol-table node sizes {leaf_k} / {internal_k} in the superblock"));
        }
        if le_u64(&fields, 24) != UNDEF {
            return Err("a driver-information block (a file split by the family or multi driver)".into());
        }
        Ok(FileLayout {
            base,
            fields_at,
            leaf_k,
            internal_k,
            root_header: le_u64(&fields, 40),
            driver_info: fields[24..32].try_into().unwrap(),
            root_name_offset: fields[32..40].try_into().unwrap(),
        })
    }

    pub fn root_header(&self) -> u64 {
        self.root_header
    }

    fn abs(&self, addr: u64) -> Result<u64, NotAppendable> {
        self.base.checked_add(addr).filter(|_| addr != UNDEF).ok_or_else(|| format!("an undefined address ({addr:#x}) where an object should be"))
    }

    /// The messages of the version-1 object header at `addr` (continuations followed, null
    /// messages dropped).
    pub fn read_header<S: Source + ?Sized>(&self, src: &S, addr: u64) -> Result<Vec<Message>, NotAppendable> {
        let at = self.abs(addr)?;
        let prefix = read(src, at, 16)?;
        if prefix[0] != 1 {
            return Err(format!("the object header at {addr} is not version 1 (latest-format object headers are rewritten)"));
        }
        let mut blocks = vec![(at + 16, u64::from(le_u32(&prefix, 8)))];
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut total = 0u64;
        while let Some((start, len)) = blocks.pop() {
            total = total.saturating_add(len);
            if !seen.insert(start) || seen.len() > MAX_HEADER_BLOCKS || total > src.len().min(MAX_METADATA_READ) {
                return Err(format!("the object header at {addr} has looping or too many continuation blocks"));
            }
            let bytes = read(src, start, len)?;
            let mut p = 0;
            while p + 8 <= bytes.len() {
                let (kind, size, flags) = (le_u16(&bytes, p), le_u16(&bytes, p + 2) as usize, bytes[p + 4]);
                let data = bytes.get(p + 8..p + 8 + size).ok_or_else(|| format!("a message of the object header at {addr} runs past its block"))?;
                // Version-1 messages are padded to 8 bytes (written back as they are).
                if size % 8 != 0 {
                    return Err(format!("a message of {size} bytes (not a multiple of 8) in the object header at {addr}"));
                }
                p += 8 + size;
                match kind {
                    0 => {}
                    MSG_CONTINUATION if data.len() >= 16 => blocks.push((self.abs(le_u64(data, 0))?, le_u64(data, 8))),
                    MSG_CONTINUATION => return Err(format!("a short continuation message in the object header at {addr}")),
                    _ => out.push(Message { kind, flags, data: data.to_vec() }),
                }
            }
        }
        Ok(out)
    }

    /// The symbol-table group whose object header is at `addr`.
    pub fn read_group<S: Source + ?Sized>(&self, src: &S, addr: u64) -> Result<Group, NotAppendable> {
        let all = self.read_header(src, addr)?;
        if all.iter().any(|m| matches!(m.kind, MSG_LINK_INFO | MSG_LINK | MSG_GROUP_INFO)) {
            return Err(format!("the group at {addr} stores its links as link messages (the latest format)"));
        }
        if all.len() > MAX_MESSAGES {
            return Err(format!("the group at {addr} has {} header messages", all.len()));
        }
        let (tables, messages): (Vec<Message>, Vec<Message>) = all.into_iter().partition(|m| m.kind == MSG_SYMBOL_TABLE);
        let [table] = &tables[..] else {
            return Err(format!("the object at {addr} has {} symbol tables (a group has one)", tables.len()));
        };
        if table.data.len() < 16 {
            return Err(format!("a short symbol table message at {addr}"));
        }
        let entries = self.read_entries(src, le_u64(&table.data, 0), le_u64(&table.data, 8))?;
        Ok(Group { messages, entries })
    }

    fn read_entries<S: Source + ?Sized>(&self, src: &S, btree: u64, heap: u64) -> Result<Vec<Entry>, NotAppendable> {
        let h = read(src, self.abs(heap)?, 32)?;
        if &h[..4] != b"HEAP" {
            return Err(format!("no local heap at {heap}"));
        }
        if le_u64(&h, 8) > MAX_METADATA_READ {
            return Err(format!("a local heap of {} bytes at {heap}", le_u64(&h, 8)));
        }
        let names = read(src, self.abs(le_u64(&h, 24))?, le_u64(&h, 8))?;
        let name_at = |offset: u64| -> Result<String, NotAppendable> {
            let rest = usize::try_from(offset).ok().and_then(|o| names.get(o..)).ok_or_else(|| format!("a link name at {offset}, past its heap"))?;
            let end = rest.iter().position(|&b| b == 0).ok_or("a link name without its terminating NUL")?;
            String::from_utf8(rest[..end].to_vec()).map_err(|_| "a link name that is not UTF-8".to_string())
        };
        let mut out = Vec::new();
        let mut stack = vec![(btree, 0usize)];
        let mut seen = HashSet::new();
        while let Some((node, depth)) = stack.pop() {
            if !seen.insert(node) || depth > MAX_BTREE_DEPTH || seen.len() as u64 > src.len() / 24 {
                return Err("a group B-tree that loops or is deeper than any file needs".into());
            }
            let at = self.abs(node)?;
            let head = read(src, at, 24)?;
            if &head[..4] != b"TREE" || head[4] != 0 {
                return Err(format!("no group B-tree node at {node}"));
            }
            let (level, used) = (head[5], le_u16(&head, 6) as u64);
            if used > 2 * self.internal_k as u64 {
                return Err(format!("a group B-tree node at {node} with {used} children (at most {})", 2 * self.internal_k));
            }
            let body = read(src, at + 24, used * 16 + 8)?;
            for i in 0..used as usize {
                let child = le_u64(&body, 8 + i * 16);
                if level > 0 {
                    stack.push((child, depth + 1));
                    continue;
                }
                if !seen.insert(child) {
                    return Err(format!("a group B-tree that reaches the symbol table node at {child} twice"));
                }
                let at = self.abs(child)?;
                let snod = read(src, at, 8)?;
                if &snod[..4] != b"SNOD" {
                    return Err(format!("no symbol table node at {child}"));
                }
                let n = le_u16(&snod, 6) as u64;
                if n > 2 * self.leaf_k as u64 || out.len() as u64 + n > src.len() / ENTRY_SIZE as u64 {
                    return Err(format!("a symbol table node at {child} with {n} entries (at most {})", 2 * self.leaf_k));
                }
                let raw = read(src, at + 8, n * ENTRY_SIZE as u64)?;
                for e in raw.chunks_exact(ENTRY_SIZE) {
                    out.push(Entry { name: name_at(le_u64(e, 0))?, raw: e.try_into().unwrap() });
                }
            }
        }
        Ok(out)
    }

    /// The superblock patch that makes `root` the root group and the file `new_len` bytes long.
    /// The end-of-file address is the one absolute address in the superblock (libhdf5 writes the
    /// file's length there, userblock included).
    fn superblock_patch(&self, root: &WrittenGroup, new_len: u64) -> (u64, Vec<u8>) {
        let mut p = Vec::with_capacity(56);
        p.extend_from_slice(&new_len.to_le_bytes());
        p.extend_from_slice(&self.driver_info);
        p.extend_from_slice(&self.root_name_offset);
        p.extend_from_slice(&root.header.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&root.btree.to_le_bytes());
        p.extend_from_slice(&root.heap.to_le_bytes());
        (self.fields_at + 16, p)
    }
}

// ------------------------------------------------------------------ writing

/// Where a written group's parts are.
#[derive(Debug, Clone, Copy)]
pub struct WrittenGroup {
    header: u64,
    btree: u64,
    heap: u64,
}

/// The global heap collection strings are being put in: its offset in the tail, size, bytes used.
struct Collection {
    at: usize,
    size: usize,
    used: usize,
    next: u16,
}

/// The bytes appended after the file, built up object by object.
pub struct Tail<'a> {
    layout: &'a FileLayout,
    /// The address (relative to the base) of `bytes[0]`.
    origin: u64,
    bytes: Vec<u8>,
    heap: Option<Collection>,
}

/// An element datatype of the datasets written here.
#[derive(Debug, Clone, Copy)]
pub enum Element {
    I8,
    I16,
    I32,
    I64,
    F32,
    /// numpy's bool as h5py writes it: an enumeration FALSE = 0, TRUE = 1 over int8.
    Bool,
    /// A variable-length UTF-8 string.
    Str,
}

impl Element {
    fn datatype(self) -> Vec<u8> {
        let int = |size: u32, signed: bool| {
            let mut d = vec![0x10, if signed { 0x08 } else { 0 }, 0, 0];
            d.extend_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&0u16.to_le_bytes());
            d.extend_from_slice(&(size as u16 * 8).to_le_bytes());
            d
        };
        match self {
            Element::I8 => int(1, true),
            Element::I16 => int(2, true),
            Element::I32 => int(4, true),
            Element::I64 => int(8, true),
            Element::F32 => {
                // IEEE little-endian: sign at bit 31, implied leading mantissa bit.
                let mut d = vec![0x11, 0x20, 31, 0];
                d.extend_from_slice(&4u32.to_le_bytes());
                d.extend_from_slice(&0u16.to_le_bytes());
                d.extend_from_slice(&32u16.to_le_bytes());
                d.extend_from_slice(&[23, 8, 0, 23]);
                d.extend_from_slice(&127u32.to_le_bytes());
                d
            }
            Element::Bool => {
                let mut d = vec![0x18, 2, 0, 0];
                d.extend_from_slice(&1u32.to_le_bytes());
                d.extend(int(1, true));
                d.extend_from_slice(b"FALSE\0\0\0TRUE\0\0\0\0");
                d.extend_from_slice(&[0, 1]);
                d
            }
            Element::Str => {
                // Variable-length string, null-terminated, UTF-8, over unsigned chars.
                let mut d = vec![0x19, 0x01, 0x01, 0];
                d.extend_from_slice(&16u32.to_le_bytes());
                d.extend(int(1, false));
                d
            }
        }
    }
}

/// A dataset's elements, little-endian as stored.
pub enum Values<'v> {
    Bytes(&'v [u8]),
    F32(&'v [f32]),
    I32(&'v [i32]),
    I64(&'v [i64]),
    Strings(&'v [&'v str]),
}

/// A version-1 dataspace: simple with `dims`, scalar when empty.
fn dataspace(dims: &[u64]) -> Vec<u8> {
    let mut d = vec![1, dims.len() as u8, 0, 0, 0, 0, 0, 0];
    for n in dims {
        d.extend_from_slice(&n.to_le_bytes());
    }
    d
}

/// A version-1 object header holding `messages` (kind, flags, data).
fn object_header(messages: &[(u16, u8, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, flags, data) in messages {
        let size = data.len().next_multiple_of(8);
        body.extend_from_slice(&kind.to_le_bytes());
        body.extend_from_slice(&(size as u16).to_le_bytes());
        body.extend_from_slice(&[*flags, 0, 0, 0]);
        body.extend_from_slice(data);
        pad8(&mut body);
    }
    let mut h = vec![1, 0];
    h.extend_from_slice(&(messages.len() as u16).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&(body.len() as u32).to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend(body);
    h
}

impl<'a> Tail<'a> {
    /// A tail for the file `src` describes, starting at its last byte (padded to 8).
    pub fn new(layout: &'a FileLayout, file_len: u64) -> Self {
        let pad = ((8 - (file_len - layout.base) % 8) % 8) as usize;
        Tail { layout, origin: file_len - layout.base, bytes: vec![0; pad], heap: None }
    }

    fn alloc(&mut self, n: usize) -> usize {
        pad8(&mut self.bytes);
        let at = self.bytes.len();
        self.bytes.resize(at + n, 0);
        at
    }

    fn addr(&self, at: usize) -> u64 {
        self.origin + at as u64
    }

    fn put(&mut self, data: &[u8]) -> u64 {
        let at = self.alloc(data.len());
        self.bytes[at..at + data.len()].copy_from_slice(data);
        self.addr(at)
    }

    /// A reference to `s` put in a global heap collection: length, collection, index.
    fn string(&mut self, s: &str) -> [u8; 16] {
        let need = 16 + s.len().next_multiple_of(8);
        // Each collection keeps room for its closing free-space object (16 bytes).
        let full = self.heap.as_ref().is_none_or(|c| c.used + need + 16 > c.size || c.next == u16::MAX);
        if full {
            self.close_collection();
            let size = (16 + need + 16).max(4096).next_multiple_of(8);
            let at = self.alloc(size);
            self.bytes[at..at + 5].copy_from_slice(b"GCOL\x01");
            self.bytes[at + 8..at + 16].copy_from_slice(&(size as u64).to_le_bytes());
            self.heap = Some(Collection { at, size, used: 16, next: 1 });
        }
        let c = self.heap.as_mut().expect("a collection is open");
        let o = c.at + c.used;
        let (index, collection) = (c.next, c.at);
        c.used += need;
        c.next += 1;
        self.bytes[o..o + 2].copy_from_slice(&index.to_le_bytes());
        self.bytes[o + 2..o + 4].copy_from_slice(&1u16.to_le_bytes());
        self.bytes[o + 8..o + 16].copy_from_slice(&(s.len() as u64).to_le_bytes());
        self.bytes[o + 16..o + 16 + s.len()].copy_from_slice(s.as_bytes());
        let mut r = [0; 16];
        r[..4].copy_from_slice(&(s.len() as u32).to_le_bytes());
        r[4..12].copy_from_slice(&self.addr(collection).to_le_bytes());
        r[12..].copy_from_slice(&u32::from(index).to_le_bytes());
        r
    }

    /// Ends the open collection with its free-space object (index 0, the rest of the collection).
    fn close_collection(&mut self) {
        if let Some(c) = self.heap.take() {
            let o = c.at + c.used;
            self.bytes[o + 8..o + 16].copy_from_slice(&((c.size - c.used) as u64).to_le_bytes());
        }
    }

    /// An attribute message: `name` = `data` of type `element` and shape `dims` (scalar when empty).
    fn attribute(name: &str, element: Element, dims: &[u64], data: &[u8]) -> Message {
        let (dt, space) = (element.datatype(), dataspace(dims));
        let mut d = vec![1, 0];
        d.extend_from_slice(&(name.len() as u16 + 1).to_le_bytes());
        d.extend_from_slice(&(dt.len() as u16).to_le_bytes());
        d.extend_from_slice(&(space.len() as u16).to_le_bytes());
        for part in [[name.as_bytes(), &[0]].concat(), dt, space] {
            d.extend(part);
            pad8(&mut d);
        }
        d.extend_from_slice(data);
        Message { kind: MSG_ATTRIBUTE, flags: 0, data: d }
    }

    /// A scalar variable-length string attribute, as h5py writes a Python `str`.
    pub fn string_attribute(&mut self, name: &str, value: &str) -> Message {
        let r = self.string(value);
        Self::attribute(name, Element::Str, &[], &r)
    }

    /// A 1-D variable-length string attribute (e.g. a dataframe's `column-order`).
    pub fn strings_attribute(&mut self, name: &str, values: &[String]) -> Message {
        let data: Vec<u8> = values.iter().flat_map(|v| self.string(v)).collect();
        Self::attribute(name, Element::Str, &[values.len() as u64], &data)
    }

    /// A 1-D int64 attribute (e.g. a sparse matrix's `shape`).
    pub fn i64s_attribute(name: &str, values: &[i64]) -> Message {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::attribute(name, Element::I64, &[values.len() as u64], &data)
    }

    /// A scalar numpy-bool attribute.
    pub fn bool_attribute(name: &str, value: bool) -> Message {
        Self::attribute(name, Element::Bool, &[], &[u8::from(value)])
    }

    /// A contiguous dataset of `element`s with shape `dims` holding `values`; returns the address
    /// of its object header.
    pub fn dataset(&mut self, element: Element, dims: &[u64], values: Values, attributes: &[Message]) -> u64 {
        let size = match &values {
            Values::Bytes(b) => b.len(),
            Values::F32(v) => v.len() * 4,
            Values::I32(v) => v.len() * 4,
            Values::I64(v) => v.len() * 8,
            Values::Strings(v) => v.len() * 16,
        };
        let at = self.alloc(size);
        match values {
            Values::Bytes(b) => self.bytes[at..at + size].copy_from_slice(b),
            Values::F32(v) => self.bytes[at..at + size].chunks_exact_mut(4).zip(v).for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
            Values::I32(v) => self.bytes[at..at + size].chunks_exact_mut(4).zip(v).for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
            Values::I64(v) => self.bytes[at..at + size].chunks_exact_mut(8).zip(v).for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
            Values::Strings(v) => {
                for (i, s) in v.iter().enumerate() {
                    let r = self.string(s);
                    self.bytes[at + 16 * i..at + 16 * (i + 1)].copy_from_slice(&r);
                }
            }
        }
        let (address, size) = if size == 0 { (UNDEF, 0u64) } else { (self.addr(at), size as u64) };
        let mut layout = vec![3, 1];
        layout.extend_from_slice(&address.to_le_bytes());
        layout.extend_from_slice(&size.to_le_bytes());
        let (dt, space) = (element.datatype(), dataspace(dims));
        // Fill value: version 2, allocated late, written if set, none set (libhdf5's defaults).
        let fill = [2u8, 2, 2, 0];
        let mut messages: Vec<(u16, u8, &[u8])> =
            vec![(MSG_DATASPACE, 0, &space), (MSG_DATATYPE, 1, &dt), (MSG_FILL_VALUE, 1, &fill), (MSG_LAYOUT, 0, &layout)];
        messages.extend(attributes.iter().map(|m| (m.kind, m.flags, &m.data[..])));
        let header = object_header(&messages);
        self.put(&header)
    }

    /// A symbol-table group holding `entries` (sorted here; names must be unique) and `messages`
    /// (its attributes and other messages, as they are to be stored).
    pub fn group(&mut self, mut entries: Vec<Entry>, messages: &[Message]) -> WrittenGroup {
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        // The local heap: "" at offset 0, then each name, NUL-terminated and padded to 8.
        let mut names = vec![0u8; 8];
        let mut offsets = Vec::with_capacity(entries.len());
        for e in &entries {
            offsets.push(names.len() as u64);
            names.extend_from_slice(e.name.as_bytes());
            names.push(0);
            pad8(&mut names);
        }
        let data = self.put(&names);
        let mut h = b"HEAP\0\0\0\0".to_vec();
        h.extend_from_slice(&(names.len() as u64).to_le_bytes());
        h.extend_from_slice(&FREE_NULL.to_le_bytes());
        h.extend_from_slice(&data.to_le_bytes());
        let heap = self.put(&h);
        // Symbol table nodes of up to 2K entries, each stored at its full size, as readers read it.
        let per_node = 2 * self.layout.leaf_k;
        let mut level: Vec<(u64, u64, u64)> = Vec::new(); // (address, left key, right key)
        for (chunk, offs) in entries.chunks(per_node).zip(offsets.chunks(per_node)) {
            let at = self.alloc(8 + per_node * ENTRY_SIZE);
            self.bytes[at..at + 5].copy_from_slice(b"SNOD\x01");
            self.bytes[at + 6..at + 8].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
            for (i, (e, off)) in chunk.iter().zip(offs).enumerate() {
                let o = at + 8 + i * ENTRY_SIZE;
                self.bytes[o..o + ENTRY_SIZE].copy_from_slice(&e.raw);
                self.bytes[o..o + 8].copy_from_slice(&off.to_le_bytes());
            }
            let left = level.last().map_or(0, |l| l.2);
            level.push((self.addr(at), left, *offs.last().expect("a chunk is never empty")));
        }
        // B-tree nodes over them, level by level, up to one root.
        let per_tree = 2 * self.layout.internal_k;
        let node_size = 24 + per_tree * 8 + (per_tree + 1) * 8;
        let mut depth = 0u8;
        let btree = loop {
            let chunks: Vec<&[(u64, u64, u64)]> = if level.is_empty() { vec![&[]] } else { level.chunks(per_tree).collect() };
            let at: Vec<usize> = chunks.iter().map(|_| self.alloc(node_size)).collect();
            let mut next = Vec::with_capacity(chunks.len());
            for (j, children) in chunks.iter().enumerate() {
                let o = at[j];
                let sibling = |k: Option<usize>| k.and_then(|k| at.get(k)).map_or(UNDEF, |&a| self.addr(a));
                let (left, right) = (sibling(j.checked_sub(1)), sibling(Some(j + 1)));
                let b = &mut self.bytes[o..o + node_size];
                b[..4].copy_from_slice(b"TREE");
                b[5] = depth;
                b[6..8].copy_from_slice(&(children.len() as u16).to_le_bytes());
                b[8..16].copy_from_slice(&left.to_le_bytes());
                b[16..24].copy_from_slice(&right.to_le_bytes());
                let mut p = 24;
                b[p..p + 8].copy_from_slice(&children.first().map_or(0, |c| c.1).to_le_bytes());
                for c in children.iter() {
                    b[p + 8..p + 16].copy_from_slice(&c.0.to_le_bytes());
                    b[p + 16..p + 24].copy_from_slice(&c.2.to_le_bytes());
                    p += 16;
                }
                let keys = (children.first().map_or(0, |c| c.1), children.last().map_or(0, |c| c.2));
                next.push((self.addr(o), keys.0, keys.1));
            }
            if next.len() == 1 {
                break next[0].0;
            }
            level = next;
            depth += 1;
        };
        let mut table = btree.to_le_bytes().to_vec();
        table.extend_from_slice(&heap.to_le_bytes());
        let mut all: Vec<(u16, u8, &[u8])> = vec![(MSG_SYMBOL_TABLE, 0, &table)];
        all.extend(messages.iter().map(|m| (m.kind, m.flags, &m.data[..])));
        let header = object_header(&all);
        WrittenGroup { header: self.put(&header), btree, heap }
    }

    /// Ends the tail with `root` as the file's root group.
    pub fn finish(mut self, root: &WrittenGroup) -> Appended {
        self.close_collection();
        let new_len = self.layout.base + self.origin + self.bytes.len() as u64;
        Appended { patches: vec![self.layout.superblock_patch(root, new_len)], tail: self.bytes }
    }
}

/// A new file in the layout h5py writes (version-0 superblock, symbol-table groups, contiguous
/// datasets) whose root group `build` writes: files the appender takes, made without Python, for
/// tests and benchmarks.
pub fn new_file(build: impl FnOnce(&mut Tail) -> WrittenGroup) -> Vec<u8> {
    const SUPERBLOCK: usize = 96;
    let mut bytes = vec![0u8; SUPERBLOCK];
    bytes[..8].copy_from_slice(b"\x89HDF\r\n\x1a\n");
    (bytes[13], bytes[14]) = (8, 8);
    bytes[16..18].copy_from_slice(&4u16.to_le_bytes());
    bytes[18..20].copy_from_slice(&16u16.to_le_bytes());
    // Base address 0; no free-space info or driver block; end of file and root entry: the patch.
    bytes[32..40].copy_from_slice(&UNDEF.to_le_bytes());
    bytes[48..56].copy_from_slice(&UNDEF.to_le_bytes());
    let layout =
        FileLayout { base: 0, fields_at: 24, leaf_k: 4, internal_k: 16, root_header: UNDEF, driver_info: UNDEF.to_le_bytes(), root_name_offset: [0; 8] };
    let mut tail = Tail::new(&layout, SUPERBLOCK as u64);
    let root = build(&mut tail);
    tail.finish(&root).apply_to(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_of_each_message_version() {
        let m = Tail::bool_attribute("ordered", false);
        assert_eq!(m.attribute_name(), Some("ordered"));
        let mut v3 = vec![3, 0, 4, 0, 0, 0, 0, 0, 0];
        v3.extend_from_slice(b"abc\0");
        assert_eq!(Message { kind: MSG_ATTRIBUTE, flags: 0, data: v3 }.attribute_name(), Some("abc"));
        assert_eq!(Message { kind: MSG_DATATYPE, flags: 0, data: vec![0; 16] }.attribute_name(), None);
    }

    struct Bytes(Vec<u8>);

    impl Source for Bytes {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), hdf5_pure::FormatError> {
            buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
    }

    /// A file made from nothing reads back with hdf5-pure and this crate's reader, and its layout
    /// is the one appended to.
    #[test]
    fn new_files_read_back() {
        let bytes = new_file(|t| {
            let attrs = vec![t.string_attribute("encoding-type", "string-array"), t.string_attribute("encoding-version", "0.2.0")];
            let names = t.dataset(Element::Str, &[3], Values::Strings(&["a", "", "ccc"]), &attrs);
            let x = t.dataset(Element::F32, &[3, 2], Values::F32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), &[]);
            let attrs = vec![t.string_attribute("_index", "_index"), Tail::bool_attribute("flag", true)];
            let obs = t.group(vec![Entry::dataset("_index", names)], &attrs);
            t.group(vec![Entry::group("obs", &obs), Entry::dataset("X", x)], &[Tail::i64s_attribute("shape", &[3, 2])])
        });
        let f = hdf5_pure::File::from_bytes(bytes.clone()).unwrap();
        assert_eq!(f.dataset("X").unwrap().read_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let names = f.dataset("obs/_index").unwrap().read_vlen_strings(hdf5_pure::VlenStringReadOptions::new()).unwrap();
        assert_eq!(names, vec!["a", "", "ccc"]);
        let attrs = f.group("obs").unwrap().attrs().unwrap();
        assert_eq!(attrs["_index"].as_str(), Some("_index"));
        let src = Bytes(bytes);
        let layout = FileLayout::read(&src).unwrap();
        let obs = layout.read_group(&src, f.superblock().root_group_address);
        assert!(obs.is_ok_and(|g| g.entries.iter().map(|e| e.name.as_str()).eq(["X", "obs"])));
    }
}
