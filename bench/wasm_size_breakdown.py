#!/usr/bin/env python3
"""Where a wasm module's bytes go: code size per crate, from the function-name section.

usage: python3 bench/wasm_size_breakdown.py target/wasm32-unknown-unknown/release/sclabel.wasm [top]
(Use the cargo output, which keeps the name section; wasm-bindgen's output may strip it.)
"""
import re
import sys
from collections import Counter


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1
        r |= (x & 0x7F) << s; s += 7
        if x < 0x80:
            return r, i


def sections(b):
    i = 8
    while i < len(b):
        sid = b[i]; i += 1
        size, i = leb(b, i)
        yield sid, b[i:i + size]
        i += size


def crate_of(name):
    """Crate of a legacy-mangled Rust symbol (_ZN<len><ident>...), impls by their self type."""
    m = re.match(r'_ZN(\d+)', name)
    if not m:
        return '(non-Rust: ' + name.split('::')[0][:30] + ')'
    first = name[m.end():m.end() + int(m.group(1))]
    first = re.sub(r'^(_?\$(LT|RF|BP|u5b|u20)\$|_)+', '', first)  # <T as Trait>, &T, *T, [T]
    m = re.match(r'[A-Za-z_][A-Za-z0-9_]*', first)
    return m.group(0) if m else '(other)'


def main(path, top=25):
    b = open(path, 'rb').read()
    n_imports = 0; code_sizes = []; names = {}; totals = Counter()
    for sid, body in sections(b):
        totals[sid] += len(body)
        if sid == 2:  # imports: count function imports
            n, i = leb(body, 0)
            for _ in range(n):
                for _ in range(2):
                    l, i = leb(body, i); i += l
                kind = body[i]; i += 1
                if kind == 0: _, i = leb(body, i); n_imports += 1
                elif kind == 1: i += 1; f, i = leb(body, i); _, i = leb(body, i); i = leb(body, i)[1] if f & 1 else i
                elif kind == 2: f, i = leb(body, i); _, i = leb(body, i); i = leb(body, i)[1] if f & 1 else i
                elif kind == 3: i += 2
                else: i += 1; _, i = leb(body, i)
        elif sid == 10:
            n, i = leb(body, 0)
            for _ in range(n):
                size, i = leb(body, i); code_sizes.append(size); i += size
        elif sid == 0:
            l, i = leb(body, 0); name = body[i:i + l].decode(); i += l
            if name != 'name':
                totals['custom:' + name] += len(body); totals[sid] -= len(body); continue
            while i < len(body):
                sub = body[i]; i += 1
                size, i = leb(body, i); end = i + size
                if sub == 1:
                    n, j = leb(body, i)
                    for _ in range(n):
                        idx, j = leb(body, j); l, j = leb(body, j)
                        names[idx] = body[j:j + l].decode('utf-8', 'replace'); j += l
                i = end
    per_crate = Counter()
    for k, size in enumerate(code_sizes):
        name = names.get(n_imports + k, '?')
        per_crate[crate_of(name)] += size
    code = sum(code_sizes)
    print(f'file {len(b):,} bytes; code section {code:,}; data section {totals[11]:,}; name section {totals[0]:,}')
    for crate, size in per_crate.most_common(int(top)):
        print(f'{size:>12,}  {100 * size / code:5.1f}%  {crate}')


if __name__ == '__main__':
    main(*sys.argv[1:])
