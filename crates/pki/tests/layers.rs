//! The library's layers, from the bottom: `format` (texts), then `error` and `fsio`, `crypto`,
//! `model`, `storage`, `ops`. A module uses only its own layer and those below, and no modules
//! import each other in a circle: a newcomer can read the crate bottom-up, and a change to a
//! low layer cannot depend on a high one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ORDER: &[&str] = &[
    "format", "error", "fsio", "crypto", "model", "storage", "ops",
];

fn rank(top: &str) -> usize {
    match top {
        "format" => 0,
        "error" | "fsio" => 1,
        other => ORDER.iter().position(|o| *o == other).unwrap_or(usize::MAX),
    }
}

/// Module (`model::layout`, `fsio`) -> the modules its non-test code names as `crate::...`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let name = rel.to_string_lossy().replace('/', "::");
            if name == "lib" || name.ends_with("mod") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Code only: not the tests, not comments (a doc link is not an import).
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut deps = BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let path: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut parts = path.split("::").filter(|s| !s.is_empty());
                let top = parts.next().unwrap_or("").to_string();
                let dep = match top.as_str() {
                    "error" | "fsio" => top,
                    _ => match parts.next() {
                        Some(m) if m.chars().next().is_some_and(char::is_lowercase) => {
                            format!("{top}::{m}")
                        }
                        _ => top,
                    },
                };
                if dep != name {
                    deps.insert(dep);
                }
            }
            g.insert(name, deps);
        }
    }
    g
}

#[test]
fn modules_use_only_their_layer_and_those_below() {
    let g = graph();
    assert!(g.len() > 20, "{} modules found", g.len());
    let mut up = Vec::new();
    for (m, deps) in &g {
        let mine = rank(m.split("::").next().unwrap());
        assert_ne!(mine, usize::MAX, "{m} is in no layer");
        for d in deps {
            if rank(d.split("::").next().unwrap()) > mine {
                up.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(up.is_empty(), "upward imports: {up:#?}");
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(1) => {
                let at = path.iter().position(|p| p == m).unwrap();
                let mut c = path[at..].to_vec();
                c.push(m.to_string());
                return Some(c);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if g.contains_key(d)
                && let Some(c) = visit(d, g, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if let Some(c) = visit(m, &g, &mut state, &mut Vec::new()) {
            panic!("import circle: {}", c.join(" -> "));
        }
    }
}
