//! A restricted pickle reader for the model files of Python tools (CellTypist's `.pkl`): it runs
//! the pickle machine's stack operations but calls nothing. The few callables those files use
//! (numpy's array and dtype reconstruction, both module spellings `numpy.core` and `numpy._core`;
//! the sklearn estimators, built as plain objects from their state) are interpreted here; any
//! other global, and any opcode outside what protocol 2–5 pickles of such files hold, is refused
//! by name. Works from bytes, so it runs natively, in Node and in the browser.

/// A value the reader built.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// An allowed callable or class, by its canonical name (`numpy.core` spelled `numpy._core`).
    Global(String),
    /// An instance of an allowed class (an sklearn estimator): its `__dict__` once built.
    Object {
        class: String,
        state: Box<Value>,
    },
    Dtype(Dtype),
    Array(Array),
    Mark,
}

/// A numpy dtype: kind ('f', 'i', 'u', 'b', 'O', 'U'), item size in bytes, little-endian or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Dtype {
    pub kind: char,
    pub size: usize,
    pub little: bool,
}

/// A numpy array: its shape and its values as numbers or as objects (strings).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// Not yet filled (numpy's `_reconstruct` before its BUILD).
    Empty,
    F64(Vec<f64>),
    Objects(Vec<Value>),
}

type R<T> = std::result::Result<T, String>;

/// The callables and classes a CellTypist model file may name. numpy 1 pickles say `numpy.core`,
/// numpy 2 `numpy._core`; both become `numpy._core`.
const ALLOWED: &[&str] = &[
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer",
    "numpy.ndarray",
    "numpy.dtype",
    "copyreg._reconstructor",
    "builtins.object",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.preprocessing._data.StandardScaler",
    // An SGDClassifier's loss (`_loss_function_`, log loss): recorded, never called.
    "sklearn.linear_model._sgd_fast.Log",
];

fn canonical(module: &str, name: &str) -> String {
    let module = module.strip_prefix("numpy.core").map_or_else(|| module.to_string(), |rest| format!("numpy._core{rest}"));
    let module = if module == "__builtin__" { "builtins".to_string() } else { module };
    format!("{module}.{name}")
}

/// Reads a pickle: the top object, or why not (truncated, a refused global or opcode, a malformed
/// array).
pub fn read(bytes: &[u8]) -> R<Value> {
    // What memo references may copy in all: a model file refers to each value a few times, a
    // hostile one nests references to blow up (the "billion laughs"); refused past the budget.
    let budget = 64 * bytes.len() + 1_000_000;
    let mut m = Machine { b: bytes, at: 0, stack: Vec::new(), memo: Vec::new(), budget };
    m.run()
}

struct Machine<'a> {
    b: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    memo: Vec<Option<Value>>,
    /// Values (nodes and array items) memo references may still copy.
    budget: usize,
}

/// `v`'s nodes and array items, counted up to `limit` (so counting costs at most that).
fn weight(v: &Value, limit: usize) -> usize {
    let mut n = 1;
    let add = |items: &[Value], n: &mut usize| {
        for x in items {
            if *n > limit {
                return;
            }
            *n += weight(x, limit - *n);
        }
    };
    match v {
        Value::Tuple(t) | Value::List(t) => add(t, &mut n),
        Value::Dict(d) => {
            for (k, x) in d {
                if n > limit {
                    break;
                }
                n += weight(k, limit - n) + weight(x, limit.saturating_sub(n));
            }
        }
        Value::Object { state, .. } => n += weight(state, limit - 1),
        Value::Bytes(b) => n += b.len() / 8,
        Value::Str(s) => n += s.len() / 8,
        Value::Array(a) => match &a.data {
            ArrayData::F64(x) => n += x.len(),
            ArrayData::Objects(x) => add(x, &mut n),
            ArrayData::Empty => {}
        },
        _ => {}
    }
    n
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| format!("truncated at byte {} (needed {n} more bytes)", self.at))?;
        let b: &'a [u8] = self.b;
        self.at = end;
        Ok(&b[end - n..end])
    }
    fn u8(&mut self) -> R<usize> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> R<usize> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
    }
    fn u32(&mut self) -> R<usize> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    fn u64(&mut self) -> R<usize> {
        let s = self.take(8)?;
        usize::try_from(u64::from_le_bytes(s.try_into().unwrap())).map_err(|_| "a length beyond this machine's memory".to_string())
    }
    fn text(&mut self, n: usize) -> R<String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string that is not UTF-8".to_string())
    }
    fn pop(&mut self) -> R<Value> {
        self.stack.pop().ok_or_else(|| "the pickle pops an empty stack".to_string())
    }
    fn top(&mut self) -> R<&mut Value> {
        self.stack.last_mut().ok_or_else(|| "the pickle uses an empty stack".to_string())
    }
    /// The values above the topmost mark (the mark removed).
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let k = self.stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("no mark on the stack")?;
        let items = self.stack.split_off(k + 1);
        self.stack.pop();
        Ok(items)
    }
    fn memo_put(&mut self, index: usize) -> R<()> {
        let v = self.stack.last().cloned().ok_or("memoizes an empty stack")?;
        if index > self.memo.len() + 100_000 {
            return Err(format!("memo index {index} far beyond the {} entries", self.memo.len()));
        }
        if index >= self.memo.len() {
            self.memo.resize(index + 1, None);
        }
        self.memo[index] = Some(v);
        Ok(())
    }
    fn memo_get(&mut self, index: usize) -> R<()> {
        let v = self.memo.get(index).and_then(Option::as_ref).ok_or_else(|| format!("memo entry {index} is not set"))?;
        let w = weight(v, self.budget);
        if w > self.budget {
            return Err("the pickle refers to its values far more often than a model file does; refused".into());
        }
        self.budget -= w;
        let v = v.clone();
        self.stack.push(v);
        Ok(())
    }

    fn run(&mut self) -> R<Value> {
        loop {
            let at = self.at;
            let op = self.u8()? as u8;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(format!("pickle protocol {p}; model files use 2 to 5"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("a tuple of more items than the stack holds".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err("APPEND to something not a list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err("APPENDS to something not a list".into()),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err("SETITEM on something not a dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    match self.top()? {
                        Value::Dict(d) => d.extend(pairs),
                        _ => return Err("SETITEMS on something not a dict".into()),
                    }
                }
                0x94 => {
                    let n = self.memo.len();
                    self.memo_put(n)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                0x8c => {
                    let n = self.u8()?;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'X' => {
                    let n = self.u32()?;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.u64()?;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'C' => {
                    let n = self.u8()?;
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v));
                }
                b'B' => {
                    let n = self.u32()?;
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v));
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v));
                }
                b'J' => {
                    let s = self.take(4)?;
                    self.stack.push(Value::Int(i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()?;
                    let s = self.take(n)?;
                    if n > 8 {
                        return Err(format!("an integer of {n} bytes"));
                    }
                    let mut buf = if s.last().is_some_and(|&b| b & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
                    buf[..n].copy_from_slice(s);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    let s = self.take(8)?;
                    self.stack.push(Value::Float(f64::from_be_bytes(s.try_into().unwrap())));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.global(&m, &n)?,
                        _ => return Err("STACK_GLOBAL without two strings".into()),
                    }
                }
                b'c' => {
                    let line = |m: &mut Self| -> R<String> {
                        let end = m.b[m.at..].iter().position(|&c| c == b'\n').ok_or("truncated GLOBAL")?;
                        let s = m.text(end)?;
                        m.at += 1;
                        Ok(s)
                    };
                    let module = line(self)?;
                    let name = line(self)?;
                    self.global(&module, &name)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = call(f, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = new_object(cls, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    build(obj, state)?;
                }
                other => return Err(format!("opcode 0x{other:02x} at byte {at}, which a model file does not use; refused")),
            }
        }
    }

    fn global(&mut self, module: &str, name: &str) -> R<()> {
        let full = canonical(module, name);
        if !ALLOWED.contains(&full.as_str()) {
            return Err(format!("the pickle calls {module}.{name}, which a CellTypist model file never does; refused (nothing was run)"));
        }
        self.stack.push(Value::Global(full));
        Ok(())
    }
}

fn tuple(v: Value, what: &str) -> R<Vec<Value>> {
    match v {
        Value::Tuple(t) => Ok(t),
        _ => Err(format!("{what}: expected a tuple")),
    }
}

/// REDUCE: the allowed callables, interpreted.
fn call(f: Value, args: Value) -> R<Value> {
    let Value::Global(name) = f else { return Err("REDUCE of something that is not a named callable".into()) };
    let args = tuple(args, &name)?;
    match name.as_str() {
        "numpy._core.multiarray._reconstruct" => match args.first() {
            Some(Value::Global(c)) if c == "numpy.ndarray" => Ok(Value::Array(Array { shape: vec![0], data: ArrayData::Empty })),
            _ => Err("numpy _reconstruct of something other than numpy.ndarray; refused".into()),
        },
        "numpy.dtype" => match args.first() {
            Some(Value::Str(code)) => dtype(code).map(Value::Dtype),
            _ => Err("numpy.dtype without a type code".into()),
        },
        "numpy._core.multiarray.scalar" => match (args.first(), args.get(1)) {
            (Some(Value::Dtype(d)), Some(Value::Bytes(b))) => {
                let v = numbers(d, b)?;
                match (d.kind, v.as_slice()) {
                    ('f', [x]) => Ok(Value::Float(*x)),
                    (_, [x]) => Ok(Value::Int(*x as i64)),
                    _ => Err("a numpy scalar of the wrong size".into()),
                }
            }
            _ => Err("numpy scalar without a dtype and bytes".into()),
        },
        "numpy._core.numeric._frombuffer" => match (args.first(), args.get(1), args.get(2)) {
            (Some(Value::Bytes(b)), Some(Value::Dtype(d)), Some(shape)) => {
                let shape = shape_of(shape)?;
                let data = numbers(d, b)?;
                check_len(&shape, data.len())?;
                Ok(Value::Array(Array { shape, data: ArrayData::F64(data) }))
            }
            _ => Err("numpy _frombuffer without bytes, a dtype and a shape".into()),
        },
        c if is_class(c) => Ok(Value::Object { class: name.clone(), state: Box::new(Value::Tuple(args)) }),
        "copyreg._reconstructor" => match args.first() {
            Some(Value::Global(c)) if is_class(c) => Ok(Value::Object { class: c.clone(), state: Box::new(Value::None) }),
            _ => Err("copyreg._reconstructor of a class that is not allowed".into()),
        },
        other => Err(format!("{other} cannot be called here; refused")),
    }
}

fn is_class(name: &str) -> bool {
    name.starts_with("sklearn.")
}

/// NEWOBJ: an instance of an allowed class, empty until its BUILD.
fn new_object(cls: Value, _args: Value) -> R<Value> {
    match cls {
        Value::Global(c) if is_class(&c) => Ok(Value::Object { class: c, state: Box::new(Value::None) }),
        Value::Global(c) => Err(format!("{c} cannot be instantiated here; refused")),
        _ => Err("NEWOBJ of something that is not a class".into()),
    }
}

/// BUILD: an array's or a dtype's state, or an estimator's `__dict__`.
fn build(obj: &mut Value, state: Value) -> R<()> {
    match obj {
        Value::Object { state: s, .. } => {
            **s = state;
            Ok(())
        }
        Value::Dtype(d) => {
            // (version, byte order, subarray, names, fields, elsize, alignment, flags)
            let t = tuple(state, "dtype state")?;
            match t.get(1) {
                Some(Value::Str(order)) => {
                    d.little = match order.as_str() {
                        "<" | "|" | "=" => true,
                        ">" => false,
                        o => return Err(format!("dtype byte order '{o}'")),
                    };
                    Ok(())
                }
                _ => Err("a dtype state without a byte order".into()),
            }
        }
        Value::Array(a) => {
            // (version, shape, dtype, is_fortran, data)
            let t = tuple(state, "array state")?;
            let [_, shape, dtype, fortran, data] = t.as_slice() else { return Err(format!("an array state of {} items", t.len())) };
            let shape = shape_of(shape)?;
            if matches!(fortran, Value::Bool(true)) && shape.len() > 1 {
                return Err("a Fortran-ordered array; model files hold C-ordered ones".into());
            }
            let Value::Dtype(d) = dtype else { return Err("an array state without a dtype".into()) };
            a.data = match (d.kind, data) {
                ('O', Value::List(items)) => ArrayData::Objects(items.clone()),
                ('U', Value::Bytes(b)) => ArrayData::Objects(unicode(d, b)?),
                (_, Value::Bytes(b)) => ArrayData::F64(numbers(d, b)?),
                _ => return Err(format!("array data of dtype kind '{}' in the wrong form", d.kind)),
            };
            let n = match &a.data {
                ArrayData::F64(v) => v.len(),
                ArrayData::Objects(v) => v.len(),
                ArrayData::Empty => 0,
            };
            check_len(&shape, n)?;
            a.shape = shape;
            Ok(())
        }
        _ => Err("BUILD of something that takes no state".into()),
    }
}

fn shape_of(v: &Value) -> R<Vec<usize>> {
    match v {
        Value::Tuple(t) => t
            .iter()
            .map(|x| match x {
                Value::Int(i) => usize::try_from(*i).map_err(|_| format!("a negative array dimension {i}")),
                _ => Err("an array dimension that is not an int".into()),
            })
            .collect(),
        _ => Err("an array shape that is not a tuple".into()),
    }
}

fn check_len(shape: &[usize], n: usize) -> R<()> {
    let want = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("an array shape too large")?;
    if want == n {
        Ok(())
    } else {
        Err(format!("an array of shape {shape:?} with {n} values"))
    }
}

/// A numpy type code ('f8', 'O8', '<f4', 'U12', 'i8', 'b1').
fn dtype(code: &str) -> R<Dtype> {
    let code = code.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = code.chars();
    let kind = chars.next().ok_or("an empty dtype code")?;
    let size: usize = chars.as_str().parse().map_err(|_| format!("dtype '{code}'"))?;
    if !matches!(kind, 'f' | 'i' | 'u' | 'b' | 'O' | 'U') {
        return Err(format!("dtype '{code}', which a model file does not hold"));
    }
    // numpy.dtype('U12') counts characters, 4 bytes each.
    let size = if kind == 'U' { size.checked_mul(4).ok_or("a string dtype too large")? } else { size };
    Ok(Dtype { kind, size, little: true })
}

/// A numpy unicode array (`<U n`: n UTF-32 code units per item, NUL-padded) as strings.
fn unicode(d: &Dtype, b: &[u8]) -> R<Vec<Value>> {
    if d.size == 0 || !b.len().is_multiple_of(d.size) {
        return Err(format!("{} bytes of strings of {} bytes", b.len(), d.size));
    }
    b.chunks(d.size)
        .map(|item| {
            let units = item.chunks(4).map(|c| if d.little { u32::from_le_bytes(c.try_into().unwrap()) } else { u32::from_be_bytes(c.try_into().unwrap()) });
            units
                .take_while(|&u| u != 0)
                .map(|u| char::from_u32(u).ok_or_else(|| format!("a string holding U+{u:X}, which is not a character")))
                .collect::<R<String>>()
                .map(Value::Str)
        })
        .collect()
}

/// Raw numeric array bytes as f64 (floats, ints, unsigned, bools).
fn numbers(d: &Dtype, b: &[u8]) -> R<Vec<f64>> {
    if d.size == 0 || d.size > 8 || !b.len().is_multiple_of(d.size) {
        return Err(format!("{} bytes of numbers of {} bytes", b.len(), d.size));
    }
    let item = |c: &[u8]| -> R<f64> {
        let mut buf = [0u8; 8];
        buf[..c.len()].copy_from_slice(c);
        if !d.little {
            buf[..c.len()].reverse();
        }
        Ok(match (d.kind, d.size) {
            ('f', 8) => f64::from_le_bytes(buf),
            ('f', 4) => f32::from_le_bytes(buf[..4].try_into().unwrap()) as f64,
            ('i', 8) => i64::from_le_bytes(buf) as f64,
            ('i', 4) => i32::from_le_bytes(buf[..4].try_into().unwrap()) as f64,
            ('u', 8) => u64::from_le_bytes(buf) as f64,
            ('u', 4) => u32::from_le_bytes(buf[..4].try_into().unwrap()) as f64,
            ('b', 1) | ('u', 1) => buf[0] as f64,
            (k, s) => return Err(format!("numeric dtype {k}{s}")),
        })
    };
    b.chunks(d.size).map(item).collect()
}

/// `dict[key]` for a string key.
pub fn get<'a>(d: &'a Value, key: &str) -> Option<&'a Value> {
    let pairs = match d {
        Value::Dict(p) => p,
        Value::Object { state, .. } => match state.as_ref() {
            Value::Dict(p) => p,
            _ => return None,
        },
        _ => return None,
    };
    pairs.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v)
}
