//! Reads the tensors of a PyTorch state dict saved with `torch.save` (the zip container of
//! PyTorch ≥ 1.6: `<name>/data.pkl` + one stored entry per storage). A small pickle reader that
//! understands only what a state dict contains and never runs anything; works from bytes, so
//! imports run in the browser too. (The `zip` crate refuses the archives PyTorch writes with a
//! zip64 end record, hence the ~40 lines of zip reading here.)
use std::collections::HashMap;

use crate::scnym::bundle::HostTensors;

type R<T> = std::result::Result<T, String>;

fn u16le(b: &[u8], at: usize) -> R<usize> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize).ok_or_else(|| "truncated zip".to_string())
}
fn u32le(b: &[u8], at: usize) -> R<usize> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize).ok_or_else(|| "truncated zip".to_string())
}

/// Entries of a zip archive whose members are stored (PyTorch never compresses).
fn zip_entries(b: &[u8]) -> R<HashMap<String, &[u8]>> {
    let eocd = (0..b.len().saturating_sub(21)).rev().find(|&i| b[i..].starts_with(b"PK\x05\x06")).ok_or("not a zip archive (no end record)")?;
    let n = u16le(b, eocd + 10)?;
    let mut at = u32le(b, eocd + 16)?;
    let mut out = HashMap::new();
    for _ in 0..n {
        if !b.get(at..).is_some_and(|s| s.starts_with(b"PK\x01\x02")) {
            return Err("bad central directory".into());
        }
        let method = u16le(b, at + 10)?;
        let size = u32le(b, at + 20)?;
        let (nl, el, cl) = (u16le(b, at + 28)?, u16le(b, at + 30)?, u16le(b, at + 32)?);
        let local = u32le(b, at + 42)?;
        let name = String::from_utf8_lossy(b.get(at + 46..at + 46 + nl).ok_or("truncated zip")?).into_owned();
        if size == 0xFFFF_FFFF || local == 0xFFFF_FFFF {
            return Err(format!("entry '{name}' needs zip64 sizes (over 4 GB): not supported"));
        }
        if method != 0 {
            return Err(format!("entry '{name}' is compressed (method {method}); PyTorch stores entries uncompressed"));
        }
        let data_at = local + 30 + u16le(b, local + 26)? + u16le(b, local + 28)?;
        out.insert(name, b.get(data_at..data_at + size).ok_or("truncated zip entry")?);
        at += 46 + nl + el + cl;
    }
    Ok(out)
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // scalar payloads are parsed but a state dict never needs them
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Obj>),
    List(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
    Global(String),
    Storage { key: String, dtype: String },
    Tensor { key: String, dtype: String, offset: usize, shape: Vec<usize>, stride: Vec<usize> },
    Mark,
    Other,
}

/// Sizes, strides and offsets: non-negative ints (a negative one would wrap to a huge size).
fn ints(o: &Obj, what: &str) -> R<Vec<usize>> {
    match o {
        Obj::Tuple(v) | Obj::List(v) => v.iter().map(|x| non_negative(x, what)).collect(),
        _ => Err(format!("tensor {what}: expected a tuple of ints")),
    }
}

fn non_negative(o: &Obj, what: &str) -> R<usize> {
    match o {
        Obj::Int(i) => usize::try_from(*i).map_err(|_| format!("tensor {what}: {i} is negative")),
        _ => Err(format!("tensor {what}: expected an int")),
    }
}

/// Objects in `o` (itself included), counted up to `limit` (so the count costs at most that).
fn nodes(o: &Obj, limit: usize) -> usize {
    let mut count = 0;
    let mut todo = vec![o];
    while let Some(x) = todo.pop() {
        count += 1;
        if count > limit {
            break;
        }
        match x {
            Obj::Tuple(v) | Obj::List(v) => todo.extend(v),
            Obj::Dict(d) => d.iter().for_each(|(k, v)| todo.extend([k, v])),
            _ => {}
        }
    }
    count
}

/// Deepest nesting a pickle may build: a state dict nests a few levels, and cloning or dropping
/// a nested object recurses (a list a million levels deep would overflow the stack).
const MAX_PICKLE_DEPTH: u32 = 256;

/// The pickle machine's stack, with each object's nesting depth (0 for a scalar, one more than its
/// deepest item for a container).
#[derive(Default)]
struct Stack {
    objects: Vec<Obj>,
    depths: Vec<u32>,
}

impl Stack {
    /// A scalar, or a container built empty.
    fn push(&mut self, o: Obj) {
        let depth = u32::from(matches!(o, Obj::Tuple(_) | Obj::List(_) | Obj::Dict(_)));
        self.objects.push(o);
        self.depths.push(depth);
    }

    fn push_nested(&mut self, o: Obj, depth: u32) -> R<()> {
        if depth > MAX_PICKLE_DEPTH {
            return Err(format!("the pickle nests objects more than {MAX_PICKLE_DEPTH} deep (not a state dict)"));
        }
        self.objects.push(o);
        self.depths.push(depth);
        Ok(())
    }

    fn pop(&mut self) -> Option<(Obj, u32)> {
        Some((self.objects.pop()?, self.depths.pop()?))
    }

    fn last(&self) -> Option<(&Obj, u32)> {
        Some((self.objects.last()?, *self.depths.last()?))
    }

    fn last_mut(&mut self) -> Option<&mut Obj> {
        self.objects.last_mut()
    }

    /// The container on top now holds items `depth` deep.
    fn holds(&mut self, depth: u32) -> R<()> {
        if let Some(d) = self.depths.last_mut() {
            *d = (*d).max(depth + 1);
            if *d > MAX_PICKLE_DEPTH {
                return Err(format!("the pickle nests objects more than {MAX_PICKLE_DEPTH} deep (not a state dict)"));
            }
        }
        Ok(())
    }

    /// The top `n` objects and their deepest depth.
    fn pop_n(&mut self, n: usize) -> R<(Vec<Obj>, u32)> {
        let at = self.objects.len().checked_sub(n).ok_or("stack underflow")?;
        let depth = self.depths.split_off(at).into_iter().max().unwrap_or(0);
        Ok((self.objects.split_off(at), depth))
    }

    /// The objects above the last MARK (which goes too) and their deepest depth.
    fn pop_mark(&mut self) -> R<(Vec<Obj>, u32)> {
        let m = self.objects.iter().rposition(|o| matches!(o, Obj::Mark)).ok_or("pickle MARK missing")?;
        let items = self.pop_n(self.objects.len() - m - 1)?;
        self.pop();
        Ok(items)
    }
}

/// A tiny pickle machine for protocol ≤ 4 state dicts.
fn unpickle(p: &[u8]) -> R<Obj> {
    let mut stack = Stack::default();
    let mut memo: HashMap<usize, (Obj, u32)> = HashMap::new();
    // Memo puts and references copy objects: bounded by the pickle's length, so references to
    // references (a "billion laughs" pickle) can't grow without end. A state dict copies a few
    // small tuples.
    let mut copy_budget = 64 * p.len() + 4096;
    let recall = |o: Option<(&Obj, u32)>, budget: &mut usize| -> R<(Obj, u32)> {
        let (o, depth) = o.ok_or("bad memo reference")?;
        let n = nodes(o, *budget);
        if n > *budget {
            return Err("the pickle's memo references expand far beyond its size (not a state dict)".into());
        }
        *budget -= n;
        Ok((o.clone(), depth))
    };
    let mut i = 0;
    let take = |i: &mut usize, n: usize| -> R<&[u8]> {
        let s = p.get(*i..*i + n).ok_or("truncated pickle")?;
        *i += n;
        Ok(s)
    };
    loop {
        let op = *p.get(i).ok_or("pickle ended without STOP")?;
        i += 1;
        match op {
            0x80 => i += 1, // PROTO
            0x95 => i += 8, // FRAME
            b'.' => return stack.pop().map(|(o, _)| o).ok_or_else(|| "empty pickle".to_string()),
            b'(' => stack.push(Obj::Mark),
            b'N' => stack.push(Obj::None),
            0x88 => stack.push(Obj::Bool(true)),
            0x89 => stack.push(Obj::Bool(false)),
            b'}' => stack.push(Obj::Dict(Vec::new())),
            b']' => stack.push(Obj::List(Vec::new())),
            b')' => stack.push(Obj::Tuple(Vec::new())),
            b'K' => stack.push(Obj::Int(take(&mut i, 1)?[0] as i64)),
            b'M' => stack.push(Obj::Int(u16::from_le_bytes(take(&mut i, 2)?.try_into().unwrap()) as i64)),
            b'J' => stack.push(Obj::Int(i32::from_le_bytes(take(&mut i, 4)?.try_into().unwrap()) as i64)),
            0x8a => {
                let n = take(&mut i, 1)?[0] as usize;
                let bytes = take(&mut i, n)?;
                let mut v: i64 = 0;
                for (k, &byte) in bytes.iter().enumerate().take(8) {
                    v |= (byte as i64) << (8 * k);
                }
                if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Obj::Int(v));
            }
            b'G' => stack.push(Obj::Float(f64::from_be_bytes(take(&mut i, 8)?.try_into().unwrap()))),
            b'X' => {
                let n = u32::from_le_bytes(take(&mut i, 4)?.try_into().unwrap()) as usize;
                stack.push(Obj::Str(String::from_utf8_lossy(take(&mut i, n)?).into_owned()));
            }
            0x8c | b'U' | b'C' => {
                let n = take(&mut i, 1)?[0] as usize;
                stack.push(Obj::Str(String::from_utf8_lossy(take(&mut i, n)?).into_owned()));
            }
            b'T' | b'B' => {
                let n = u32::from_le_bytes(take(&mut i, 4)?.try_into().unwrap()) as usize;
                stack.push(Obj::Str(String::from_utf8_lossy(take(&mut i, n)?).into_owned()));
            }
            b'c' => {
                let end1 = p[i..].iter().position(|&c| c == b'\n').ok_or("bad GLOBAL")? + i;
                let end2 = p[end1 + 1..].iter().position(|&c| c == b'\n').ok_or("bad GLOBAL")? + end1 + 1;
                let name = format!("{}.{}", String::from_utf8_lossy(&p[i..end1]), String::from_utf8_lossy(&p[end1 + 1..end2]));
                i = end2 + 1;
                stack.push(Obj::Global(name));
            }
            0x93 => {
                let (name, _) = stack.pop().ok_or("stack underflow")?;
                let (module, _) = stack.pop().ok_or("stack underflow")?;
                match (module, name) {
                    (Obj::Str(m), Obj::Str(n)) => stack.push(Obj::Global(format!("{m}.{n}"))),
                    _ => return Err("bad STACK_GLOBAL".into()),
                }
            }
            b'q' => {
                let k = take(&mut i, 1)?[0] as usize;
                memo.insert(k, recall(Some(stack.last().ok_or("stack underflow")?), &mut copy_budget)?);
            }
            b'r' => {
                let k = u32::from_le_bytes(take(&mut i, 4)?.try_into().unwrap()) as usize;
                memo.insert(k, recall(Some(stack.last().ok_or("stack underflow")?), &mut copy_budget)?);
            }
            0x94 => {
                let k = memo.len();
                memo.insert(k, recall(Some(stack.last().ok_or("stack underflow")?), &mut copy_budget)?);
            }
            b'h' => {
                let k = take(&mut i, 1)?[0] as usize;
                let (o, depth) = recall(memo.get(&k).map(|(o, d)| (o, *d)), &mut copy_budget)?;
                stack.push_nested(o, depth)?;
            }
            b'j' => {
                let k = u32::from_le_bytes(take(&mut i, 4)?.try_into().unwrap()) as usize;
                let (o, depth) = recall(memo.get(&k).map(|(o, d)| (o, *d)), &mut copy_budget)?;
                stack.push_nested(o, depth)?;
            }
            b't' => {
                let (items, depth) = stack.pop_mark()?;
                stack.push_nested(Obj::Tuple(items), depth + 1)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let (items, depth) = stack.pop_n(n)?;
                stack.push_nested(Obj::Tuple(items), depth + 1)?;
            }
            b'Q' => {
                // persistent id: ('storage', <StorageType>, key, location, numel)
                let (pid, _) = stack.pop().ok_or("stack underflow")?;
                let Obj::Tuple(v) = pid else { return Err("bad persistent id".into()) };
                match (v.get(1), v.get(2)) {
                    (Some(Obj::Global(t)), Some(Obj::Str(key))) => stack.push(Obj::Storage { key: key.clone(), dtype: t.clone() }),
                    _ => return Err("unsupported persistent id".into()),
                }
            }
            b'R' => {
                let (args, depth) = stack.pop().ok_or("stack underflow")?;
                let (f, _) = stack.pop().ok_or("stack underflow")?;
                let Obj::Tuple(a) = args else { return Err("REDUCE arguments are not a tuple".into()) };
                let out = match &f {
                    Obj::Global(g) if g == "torch._utils._rebuild_tensor_v2" || g == "torch._utils._rebuild_tensor" => {
                        let Some(Obj::Storage { key, dtype }) = a.first() else { return Err("tensor without storage".into()) };
                        let offset = non_negative(a.get(1).ok_or("tensor offset missing")?, "offset")?;
                        let shape = ints(a.get(2).ok_or("tensor shape missing")?, "shape")?;
                        let stride = ints(a.get(3).ok_or("tensor stride missing")?, "stride")?;
                        if shape.len() != stride.len() {
                            return Err(format!("tensor shape {shape:?} and stride {stride:?} differ in rank"));
                        }
                        Obj::Tensor { key: key.clone(), dtype: dtype.clone(), offset, shape, stride }
                    }
                    Obj::Global(g) if g == "torch._utils._rebuild_parameter" => a.into_iter().next().unwrap_or(Obj::Other),
                    Obj::Global(g) if g == "collections.OrderedDict" => Obj::Dict(Vec::new()),
                    _ => Obj::Other,
                };
                // At most as deep as its arguments (a parameter passes its tensor through).
                stack.push_nested(out, depth)?;
            }
            b'b' => {
                stack.pop().ok_or("stack underflow")?; // BUILD state (e.g. OrderedDict._metadata): ignored
            }
            b's' => {
                let (v, dv) = stack.pop().ok_or("stack underflow")?;
                let (k, dk) = stack.pop().ok_or("stack underflow")?;
                if let Some(Obj::Dict(d)) = stack.last_mut() {
                    d.push((k, v));
                    stack.holds(dk.max(dv))?;
                }
            }
            b'u' => {
                let (items, depth) = stack.pop_mark()?;
                if let Some(Obj::Dict(d)) = stack.last_mut() {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                    stack.holds(depth)?;
                }
            }
            b'a' => {
                let (v, depth) = stack.pop().ok_or("stack underflow")?;
                if let Some(Obj::List(l)) = stack.last_mut() {
                    l.push(v);
                    stack.holds(depth)?;
                }
            }
            b'e' => {
                let (items, depth) = stack.pop_mark()?;
                if let Some(Obj::List(l)) = stack.last_mut() {
                    l.extend(items);
                    stack.holds(depth)?;
                }
            }
            b'0' => {
                stack.pop();
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
    }
}

/// Floating-point tensors of a `torch.save`d state dict, as f32 in PyTorch layout.
pub fn read_state_dict(bytes: &[u8]) -> R<HostTensors> {
    let entries = zip_entries(bytes)?;
    let pkl_name =
        entries.keys().find(|k| k.ends_with("/data.pkl") || k.as_str() == "data.pkl").cloned().ok_or("no data.pkl in the archive: not a torch.save file")?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let Obj::Dict(items) = unpickle(entries[&pkl_name])? else { return Err("the checkpoint is not a dict of tensors".into()) };
    let mut out = HostTensors::new();
    for (k, v) in items {
        let (Obj::Str(name), Obj::Tensor { key, dtype, offset, shape, stride }) = (k, v) else { continue };
        let width = match dtype.as_str() {
            "torch.FloatStorage" => 4,
            "torch.DoubleStorage" => 8,
            _ => continue, // integer buffers such as num_batches_tracked
        };
        let raw = entries.get(&format!("{prefix}data/{key}")).ok_or_else(|| format!("storage {key} of '{name}' is missing"))?;
        let values = tensor_values(&name, raw, width, offset, &shape, &stride)?;
        out.insert(name, (shape, values));
    }
    Ok(out)
}

/// A tensor's elements, row-major, from its storage bytes (`width`: 4 for f32, 8 for f64) at
/// `offset` with `stride` (in elements). Sizes are checked before anything is allocated.
fn tensor_values(name: &str, raw: &[u8], width: usize, offset: usize, shape: &[usize], stride: &[usize]) -> R<Vec<f32>> {
    let too_big = || format!("tensor '{name}' of shape {shape:?} does not fit its storage ({} bytes)", raw.len());
    let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(too_big)?;
    if numel.checked_mul(width).is_none_or(|b| b > raw.len()) {
        return Err(too_big());
    }
    let mut values = Vec::with_capacity(numel);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at = idx.iter().zip(stride).try_fold(offset, |a, (i, s)| i.checked_mul(*s).and_then(|x| a.checked_add(x))).ok_or_else(too_big)?;
        let b = at.checked_mul(width).and_then(|start| raw.get(start..start.checked_add(width)?)).ok_or_else(|| format!("storage of '{name}' is too short"))?;
        values.push(if width == 4 { f32::from_le_bytes(b.try_into().expect("4 bytes")) } else { f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32 });
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of two references to the previous level, 40 levels deep: 2^40 objects if expanded.
    #[test]
    fn memo_references_cannot_expand_without_end() {
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for level in 1..=40u8 {
            p.extend([b']', b'(', b'h', level - 1, b'h', level - 1, b'e', b'q', level]);
        }
        p.push(b'.');
        let t = std::time::Instant::now();
        let e = unpickle(&p).unwrap_err();
        assert!(e.contains("memo references expand"), "{e}");
        assert!(t.elapsed().as_secs() < 5, "refused in {:?}", t.elapsed());
    }

    /// Lists nested 100,000 deep (200 KB of pickle) are refused before dropping them could
    /// overflow the stack; 200 levels are fine.
    #[test]
    fn deep_nesting_is_refused() {
        let nested = |n: usize| {
            let mut p = vec![0x80, 2];
            p.extend(std::iter::repeat_n(b']', n));
            p.extend(std::iter::repeat_n(b'a', n - 1));
            p.push(b'.');
            p
        };
        let e = unpickle(&nested(100_000)).unwrap_err();
        assert!(e.contains("nests objects more than 256 deep"), "{e}");
        assert!(matches!(unpickle(&nested(200)), Ok(Obj::List(_))));
    }

    #[test]
    fn negative_and_huge_tensor_sizes_are_errors() {
        assert!(ints(&Obj::Tuple(vec![Obj::Int(3), Obj::Int(-1)]), "shape").unwrap_err().contains("-1 is negative"));
        assert!(non_negative(&Obj::Int(-8), "offset").unwrap_err().contains("negative"));
        let raw = vec![0u8; 16];
        // Element counts that overflow, or exceed the storage, are refused before allocating.
        assert!(tensor_values("w", &raw, 4, 0, &[1 << 40, 1 << 40], &[1 << 40, 1]).unwrap_err().contains("does not fit"));
        assert!(tensor_values("w", &raw, 4, 0, &[5], &[1]).unwrap_err().contains("does not fit"));
        // Offsets and strides that point past the storage (or overflow) are refused.
        assert!(tensor_values("w", &raw, 4, usize::MAX, &[2], &[1]).is_err());
        assert!(tensor_values("w", &raw, 4, 0, &[2, 2], &[usize::MAX, 1]).is_err());
        assert_eq!(tensor_values("w", &raw, 4, 0, &[2, 2], &[2, 1]).unwrap(), vec![0.0; 4]);
    }
}
