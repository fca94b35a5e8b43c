//! Tidy checks of the crate's shape (ARCHITECTURE.md, "Layers"): every `crate::`/`super::`
//! path in `xtask/src` points at the same layer or one below, the module graph has no
//! cycle, and no production function is longer than 100 lines (at most three listed
//! exceptions, each marked in the code with a `// tidy: long fn` comment saying why).
//!
//! The source is read as text with a small lexer (comments and string literals are
//! blanked first), the way rust-analyzer's tidy tests read the tree: no parser, no macro
//! expansion, so a path spelled inside a macro call counts like any other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use crate::support::workspace;

/// The layers, bottom first. A module may import its own layer or a lower one.
const LAYERS: &[&[&str]] = &[
    &["support"],
    &["cache"],
    &["engine"],
    &["github"],
    &["report"],
    &["job"],
    &["dev"],
    &["commands", "flags"],
];

/// Longest a production function may be, in lines (its signature to its closing brace).
const MAX_FN_LINES: usize = 100;

/// How many functions may be longer than [`MAX_FN_LINES`], each marked `// tidy: long fn`.
const MAX_LONG_EXCEPTIONS: usize = 3;

/// One source file as the tidy checks see it.
struct Source {
    /// Module path (`engine::plan`; `cache` for `cache/mod.rs`).
    module: String,
    /// Relative path, for messages.
    rel: String,
    /// The text with comments and the contents of string and char literals blanked
    /// (line structure kept).
    code: String,
    /// The original text.
    text: String,
    /// Whether the whole file is test code (`#[cfg(test)] mod x;` in its parent).
    test_only: bool,
}

fn sources() -> Vec<Source> {
    let src = workspace().join("xtask/src");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&src).into_iter().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = p
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "main.rs" || rel == "lib.rs" {
            continue;
        }
        let module = rel
            .trim_end_matches(".rs")
            .trim_end_matches("/mod")
            .replace('/', "::");
        let text = fs::read_to_string(p).unwrap();
        out.push(Source {
            module,
            rel,
            code: blank(&text),
            text,
            test_only: false,
        });
    }
    // Files declared `#[cfg(test)] mod name;` are test code.
    let mut test_modules = BTreeSet::new();
    for s in &out {
        let lines: Vec<&str> = s.code.lines().collect();
        for w in lines.windows(2) {
            if w[0].trim() == "#[cfg(test)]" {
                if let Some(name) = w[1]
                    .trim()
                    .strip_prefix("mod ")
                    .and_then(|r| r.strip_suffix(';'))
                {
                    test_modules.insert(child_of(&s.module, name.trim()));
                }
            }
        }
    }
    for s in &mut out {
        s.test_only = test_modules.contains(&s.module);
    }
    out
}

/// The module path of child `name` declared in module `module` (`mod name;`).
fn child_of(module: &str, name: &str) -> String {
    format!("{module}::{name}")
}

/// Blank comments and literal contents, keeping newlines, so braces and paths inside them
/// are not seen.
fn blank(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
        {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('r');
            for _ in 0..=hashes {
                out.push(' ');
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    out.push('"');
                    for _ in 0..hashes {
                        out.push(' ');
                    }
                    j += 1 + hashes;
                    break;
                }
                out.push(keep(b[j]));
                j += 1;
            }
            // Keep the opening quote visible as a quote pair for readability.
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(keep(b[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a).
            if next == Some('\\') {
                out.push('\'');
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    out.push(' ');
                    i += 1;
                }
                out.push_str("  ");
                i += 1;
            } else if b.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer: add its folder to LAYERS"))
}

/// The module edges of the crate: `from` uses something of `to` (`to` is the longest
/// module prefix of the path). Self edges are left out.
fn edges(sources: &[Source]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let modules: BTreeSet<&str> = sources.iter().map(|s| s.module.as_str()).collect();
    let resolve = |segments: &[&str]| -> Option<String> {
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|m| modules.contains(m.as_str()))
    };
    let path_re =
        regex::Regex::new(r"\b(crate|super)((?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+)").unwrap();
    let group_re =
        regex::Regex::new(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^}]*)\}").unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for s in sources {
        let self_segments: Vec<&str> = s.module.split("::").collect();
        // The module `super` means from this file: a mod.rs file is its folder's module,
        // so `super` is one up from it; a plain file's `super` is its parent. Inside an
        // inline `mod name { .. }`, `super` is the file's own module.
        let mut inline_depth_line = usize::MAX;
        for (n, line) in s.code.lines().enumerate() {
            let t = line.trim_start();
            if inline_depth_line == usize::MAX
                && (t.starts_with("mod ") || t.starts_with("pub mod "))
                && t.trim_end().ends_with('{')
            {
                inline_depth_line = n;
            }
            let inline = n > inline_depth_line;
            let base_for = |root: &str| -> Vec<&str> {
                if root == "crate" {
                    Vec::new()
                } else {
                    if inline {
                        self_segments.clone()
                    } else {
                        self_segments[..self_segments.len() - 1].to_vec()
                    }
                }
            };
            let mut targets: Vec<Vec<String>> = Vec::new();
            for c in group_re.captures_iter(line) {
                let mut base: Vec<String> = base_for(&c[1]).iter().map(|s| s.to_string()).collect();
                base.extend(
                    c[2].split("::")
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned),
                );
                for item in c[3].split(',') {
                    let item = item.trim().split(" as ").next().unwrap().trim();
                    if item.is_empty() {
                        continue;
                    }
                    let mut p = base.clone();
                    if item != "self" {
                        p.extend(item.split("::").map(str::to_owned));
                    }
                    targets.push(p);
                }
            }
            for c in path_re.captures_iter(line) {
                let mut base: Vec<String> = base_for(&c[1]).iter().map(|s| s.to_string()).collect();
                for seg in c[2].split("::").filter(|x| !x.is_empty()) {
                    if seg == "super" {
                        base.pop();
                    } else {
                        base.push(seg.to_owned());
                    }
                }
                targets.push(base);
            }
            for t in targets {
                let segs: Vec<&str> = t.iter().map(String::as_str).collect();
                if let Some(to) = resolve(&segs) {
                    if to != s.module {
                        *out.entry(s.module.clone())
                            .or_default()
                            .entry(to)
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    out
}

/// Imports that go up the layer map, as `from -> to` lines.
fn upward(edges: &BTreeMap<String, BTreeMap<String, usize>>) -> Vec<String> {
    let mut v = Vec::new();
    for (from, tos) in edges {
        for to in tos.keys() {
            if layer_of(to) > layer_of(from) {
                v.push(format!("{from} -> {to}"));
            }
        }
    }
    v
}

/// The module cycles (strongly connected components of more than one module), each
/// sorted.
fn cycles(edges: &BTreeMap<String, BTreeMap<String, usize>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a few hundred modules (recursion is fine).
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, usize>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(tos) = t.edges.get(v) {
            for w in tos.keys() {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(f, tos)| std::iter::once(f.as_str()).chain(tos.keys().map(String::as_str)))
        .collect();
    for n in nodes {
        if !t.index.contains_key(n) {
            visit(&mut t, n);
        }
    }
    t.out.sort();
    t.out
}

/// A function longer than [`MAX_FN_LINES`]: `file:line name (lines)`, and whether the
/// code marks it as a listed exception.
struct LongFn {
    at: String,
    lines: usize,
    excepted: bool,
}

/// Every production function's length, by matching braces in the blanked code. Test
/// modules (`#[cfg(test)] mod ..`, inline or in their own file) are left out.
fn long_functions(sources: &[Source], limit: usize) -> Vec<LongFn> {
    let fn_re =
        regex::Regex::new(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)")
            .unwrap();
    let mut out = Vec::new();
    for s in sources.iter().filter(|s| !s.test_only) {
        let code: Vec<&str> = s.code.lines().collect();
        let text: Vec<&str> = s.text.lines().collect();
        let in_test = inline_test_lines(&code);
        for (n, line) in code.iter().enumerate() {
            if in_test[n] {
                continue;
            }
            let Some(c) = fn_re.captures(line) else {
                continue;
            };
            // A declaration without a body (trait method) ends with `;` before any `{`.
            let Some(end) = block_end(&code, n) else {
                continue;
            };
            let len = end - n + 1;
            if len > limit {
                // The marker sits in the comment lines just above the function's docs.
                let mut k = n;
                let mut excepted = false;
                while k > 0 {
                    k -= 1;
                    let t = text[k].trim_start();
                    if t.starts_with("//") || t.starts_with("#[") {
                        if t.contains("tidy: long fn") {
                            excepted = true;
                        }
                    } else {
                        break;
                    }
                }
                out.push(LongFn {
                    at: format!("{}:{} {}", s.rel, n + 1, &c[1]),
                    lines: len,
                    excepted,
                });
            }
        }
    }
    out
}

/// For each line of `code`, whether it is inside an inline `#[cfg(test)] mod x { .. }`.
fn inline_test_lines(code: &[&str]) -> Vec<bool> {
    let mut in_test = vec![false; code.len()];
    let mut i = 0;
    while i < code.len() {
        if code[i].trim() == "#[cfg(test)]"
            && code
                .get(i + 1)
                .is_some_and(|l| l.trim_start().starts_with("mod ") && l.contains('{'))
        {
            let end = block_end(code, i + 1).unwrap_or(code.len() - 1);
            for f in in_test.iter_mut().take(end + 1).skip(i) {
                *f = true;
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    in_test
}

/// The line of the brace that closes the first block opened at or after `start`; `None`
/// when a `;` comes before any `{` (a declaration without a body).
fn block_end(code: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    let mut paren = 0i32;
    for (n, line) in code.iter().enumerate().skip(start) {
        for ch in line.chars() {
            match ch {
                '(' | '[' => paren += 1,
                ')' | ']' => paren -= 1,
                ';' if !opened && paren == 0 => return None,
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    if opened && depth == 0 {
                        return Some(n);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let up = upward(&edges(&sources()));
    assert!(
        up.is_empty(),
        "imports that go up the layer map (support < cache < engine < github < report < job \
         < dev < commands): move the item down, or pass it in as a parameter:\n{}",
        up.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let found: Vec<String> = cycles(&edges(&sources()))
        .iter()
        .map(|m| m.join(" <-> "))
        .collect();
    assert!(
        found.is_empty(),
        "modules that import each other in a circle (break each by moving the shared item \
         into one of them or below both):\n{}",
        found.join("\n")
    );
}

#[test]
fn no_production_function_is_over_100_lines() {
    let long = long_functions(&sources(), MAX_FN_LINES);
    let unmarked: Vec<String> = long
        .iter()
        .filter(|f| !f.excepted)
        .map(|f| format!("{} ({} lines)", f.at, f.lines))
        .collect();
    assert!(
        unmarked.is_empty(),
        "functions over {MAX_FN_LINES} lines: split them (one function, one concern):\n{}",
        unmarked.join("\n")
    );
    let excepted = long.iter().filter(|f| f.excepted).count();
    assert!(
        excepted <= MAX_LONG_EXCEPTIONS,
        "{excepted} functions are marked `tidy: long fn`; at most {MAX_LONG_EXCEPTIONS} may be"
    );
}

/// Exit codes are part of the interface (README's "Exit codes"): production code makes an
/// `ExitCode` only through `support::exit::Exit`, so a code cannot drift from its meaning.
#[test]
fn exit_codes_come_only_from_the_exit_type() {
    let re = regex::Regex::new(r"ExitCode::(from\s*\(|SUCCESS|FAILURE)").unwrap();
    let mut found = Vec::new();
    for s in sources()
        .iter()
        .filter(|s| !s.test_only && s.rel != "support/exit.rs")
    {
        let code: Vec<&str> = s.code.lines().collect();
        let in_test = inline_test_lines(&code);
        for (n, line) in code.iter().enumerate() {
            if !in_test[n] && re.is_match(line) {
                found.push(format!("{}:{}: {}", s.rel, n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "exit codes made from bare values; use support::exit::Exit (e.g. `Exit::Failed.into()`):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_tidy_lexer_and_graph_see_what_they_should() {
    // The checks above pass vacuously if the lexer blanks everything or the path regexes
    // match nothing: check them on a known input.
    let code = blank("let s = \"crate::x { }\"; // crate::y\nuse crate::engine::plan::{A, B};\n");
    assert!(!code.contains("crate::x") && !code.contains("crate::y"));
    assert!(code.contains("crate::engine::plan"));
    let src = |module: &str, rel: &str, text: &str| Source {
        module: module.into(),
        rel: rel.into(),
        code: blank(text),
        text: text.into(),
        test_only: false,
    };
    let s = vec![
        src("cache", "cache/mod.rs", "use crate::engine::plan;\n"),
        src(
            "engine::plan",
            "engine/plan.rs",
            "use crate::cache::X;\nuse super::run;\nfn f() {\n}\n",
        ),
        src(
            "engine::run",
            "engine/run.rs",
            "use crate::engine::{plan::Plan, self};\n",
        ),
        src("engine", "engine/mod.rs", ""),
    ];
    let e = edges(&s);
    assert_eq!(upward(&e), vec!["cache -> engine::plan".to_owned()]);
    assert_eq!(
        cycles(&e),
        vec![vec![
            "cache".to_owned(),
            "engine::plan".to_owned(),
            "engine::run".to_owned()
        ]]
    );
    let long = long_functions(
        &[src(
            "x",
            "x.rs",
            &format!(
                "fn big() {{\n{}}}\nfn small() {{ }}\n",
                "    let _ = 1;\n".repeat(120)
            ),
        )],
        MAX_FN_LINES,
    );
    assert_eq!(long.len(), 1);
    assert_eq!(long[0].lines, 122);
}
