//! The crate's layers, checked on its source: every `crate::NAME` a module uses names a
//! module on its own layer or below, and no modules import each other in a circle (one
//! through several layers has an upward import, which is named; one within a layer is
//! named as a circle). A new module fails here until it is given a layer in `LAYERS`.
//!
//! What is read: every `.rs` file under src/, except main.rs and src/bin/ (binaries, which
//! use the library from outside as `bundle_init::`). A folder module (src/supervisor/ with
//! mod.rs, daemon.rs, ...) is one module, whose files may import each other. Comments and
//! string literals are ignored, and so are `#[cfg(test)]` modules, inline or in a file of
//! their own: a test may build its fixture with a layer above (keys' tests parse bundle
//! text). Other `#[cfg(test)]` items are checked like any code. `crate::NAME` that is not a
//! module is an item of the crate root, `lib`; in lib.rs itself, `NAME::` of a module is
//! an import too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers from the bottom. A module may import modules of its own layer (without a
/// circle) and of the layers below it, never above.
const LAYERS: &[(&[&str], &str)] = &[
    (
        &["sys"],
        "system calls and kernel constants: knows nothing of bundles",
    ),
    (
        &["signal", "time", "id", "json"],
        "signal names, the clock and durations, daemon ids, the JSON writer: words every layer uses",
    ),
    (
        &["plan"],
        "what to run, as plain data: the supervisor's whole input",
    ),
    (
        &["values", "expand"],
        "a bundle file's values, each parsed into plan types, and ${NAME} expansion",
    ),
    (
        &["keys"],
        "the bundle vocabulary: each key and route action defined once",
    ),
    (
        &["config", "reload"],
        "the file's parser and the diff of two definitions, over keys",
    ),
    (
        &["bundle"],
        "loading a bundle: file, selection, descriptor budget, at start and reload",
    ),
    (
        &["supervisor"],
        "the sans-IO core: plan and time in, actions out; no parser, no probes",
    ),
    (
        &[
            "members", "envfile", "spawn", "output", "ready", "control", "live", "notify", "http",
            "logline",
        ],
        "adapters: carry out actions, turn I/O into events",
    ),
    (
        &["runtime"],
        "the loop that ties the adapters to the supervisor",
    ),
    (
        &["cli", "lib"],
        "the entry point: the command line and run()",
    ),
];

/// One import: `from` (a module) names `to` at `file:line`, written as `path`.
#[derive(Clone, Debug)]
struct Import {
    from: String,
    to: String,
    path: String,
    file: String,
    line: usize,
}

#[test]
fn every_import_points_down_the_layers_and_none_go_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = source_files(&root.join("src"))
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, text)
        })
        .collect::<Vec<_>>();
    assert!(files.iter().any(|(f, _)| f == "src/lib.rs"), "{files:?}");
    let problems = check(&files);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_string(), text.to_string())
}

/// Imports that point down pass, in a folder module too; comments, strings and test
/// modules (inline or in their own file) are not imports.
#[test]
fn the_check_passes_downward_imports_and_ignores_comments_strings_and_tests() {
    let clean = [
        file("src/lib.rs", "mod plan;\nfn run() { cli::parse(); }\n"),
        file("src/cli.rs", "use crate::{plan::X, sys};\n"),
        file("src/sys.rs", ""),
        file(
            "src/plan.rs",
            "// crate::keys\nconst S: &str = \"crate::keys\";\nconst R: &str = r#\"crate::keys\"#;\n",
        ),
        file(
            "src/keys.rs",
            "const C: char = '{';\nuse crate::{plan::{self, X}, sys};\n#[cfg(test)]\nmod tests {\n    use crate::config;\n}\n",
        ),
        file(
            "src/supervisor/mod.rs",
            "use crate::plan;\nmod daemon;\n#[cfg(test)]\nmod tests;\n",
        ),
        file(
            "src/supervisor/daemon.rs",
            "use crate::supervisor::X;\nuse super::Y;\n",
        ),
        file("src/supervisor/tests.rs", "use crate::runtime;\n"),
    ];
    assert_eq!(check(&clean), Vec::<String>::new());
}

/// The check itself fails where it must: an upward import (also of an item of lib), a
/// circle on one layer (also through lib's bare paths), a module with no layer.
#[test]
fn the_check_refuses_an_upward_import_a_circle_and_an_unplaced_module() {
    let upward = check(&[
        file("src/plan.rs", "\nuse crate::keys::DAEMON_KEYS;\n"),
        file("src/keys.rs", ""),
    ]);
    assert_eq!(
        upward,
        [
            "src/plan.rs:2: `crate::keys` points up: plan is on layer 2 (plan: what to run, as plain data: the supervisor's whole input), but imports keys on layer 4 (keys: the bundle vocabulary: each key and route action defined once)"
        ]
    );

    let circle = check(&[
        file("src/config.rs", "use crate::reload;\n"),
        file("src/reload.rs", "fn f() { crate::config::parse(); }\n"),
    ]);
    assert_eq!(
        circle,
        [
            "circle: config -> reload -> config (src/config.rs:1 imports reload; src/reload.rs:1 imports config)"
        ]
    );

    let root_item = check(&[file("src/plan.rs", "use crate::say;\n")]);
    assert_eq!(root_item.len(), 1, "{root_item:?}");
    assert!(
        root_item[0].starts_with("src/plan.rs:1: `crate::say` points up: plan is on layer 2"),
        "{root_item:?}"
    );
    let root_circle = check(&[
        file("src/lib.rs", "mod cli;\nfn run() { cli::parse(); }\n"),
        file("src/cli.rs", "fn f() { crate::say(); }\n"),
    ]);
    assert_eq!(root_circle.len(), 1, "{root_circle:?}");
    assert!(
        root_circle[0].starts_with("circle: cli -> lib -> cli"),
        "{root_circle:?}"
    );

    let unplaced = check(&[file("src/gadget/mod.rs", "")]);
    assert_eq!(
        unplaced,
        [
            "src/gadget/mod.rs: module `gadget` has no layer in tests/layers.rs: give it one (with a reason)"
        ]
    );
}

/// Every problem with `files` (path relative to the crate, text), one line each.
fn check(files: &[(String, String)]) -> Vec<String> {
    let modules: Vec<String> = files.iter().map(|(path, _)| module_of(path)).collect();
    let mut problems: Vec<String> = files
        .iter()
        .zip(&modules)
        .filter(|(_, module)| layer(module).is_none())
        .map(|((path, _), module)| {
            format!("{path}: module `{module}` has no layer in tests/layers.rs: give it one (with a reason)")
        })
        .collect();
    let test_files = test_only_files(files);
    let mut imports = Vec::new();
    for ((path, text), module) in files.iter().zip(&modules) {
        if !test_files.contains(path) {
            imports.extend(imports_of(path, module, text, &modules));
        }
    }
    problems.extend(imports.iter().filter_map(upward));
    // A circle through layers has an import that points up, reported above; what is left
    // are circles among the modules of one layer.
    let level: Vec<Import> = imports
        .into_iter()
        .filter(|i| upward(i).is_none())
        .collect();
    problems.extend(circles(&level));
    problems
}

/// `src/config.rs` is `config`, `src/supervisor/daemon.rs` is `supervisor`.
fn module_of(path: &str) -> String {
    let inside = path.strip_prefix("src/").unwrap_or(path);
    let first = inside.split('/').next().unwrap_or(inside);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The layer a module is on: its index in `LAYERS`.
fn layer(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(modules, _)| modules.contains(&module))
}

/// `layer 4 (keys: the bundle vocabulary...)`.
fn describe(n: usize) -> String {
    let (members, why) = LAYERS[n];
    format!("layer {n} ({}: {why})", members.join(", "))
}

/// The message for an import that points up, if this one does.
fn upward(import: &Import) -> Option<String> {
    let (from, to) = (layer(&import.from)?, layer(&import.to)?);
    (to > from).then(|| {
        format!(
            "{}:{}: `{}` points up: {} is on {}, but imports {} on {}",
            import.file,
            import.line,
            import.path,
            import.from,
            describe(from),
            import.to,
            describe(to)
        )
    })
}

/// The modules named by one file's code (not its comments, strings or test modules).
fn imports_of(path: &str, module: &str, text: &str, modules: &[String]) -> Vec<Import> {
    let code = without_test_modules(&code_only(text));
    let mut names = crate_paths(&code);
    if path == "src/lib.rs" {
        names.extend(root_paths(&code, modules));
    }
    names
        .into_iter()
        .map(|(offset, written, name)| Import {
            from: module.to_string(),
            to: if modules.contains(&name) {
                name
            } else {
                "lib".to_string()
            },
            path: written,
            file: path.to_string(),
            line: code[..offset].matches('\n').count() + 1,
        })
        .filter(|import| import.to != import.from)
        .collect()
}

/// Every circle among the modules, each once, as `a -> b -> a` with where each step is.
fn circles(imports: &[Import]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for import in imports {
        graph
            .entry(&import.from)
            .or_default()
            .entry(&import.to)
            .or_insert(import);
    }
    let mut found: Vec<Vec<&str>> = Vec::new();
    for &start in graph.keys() {
        let mut path = vec![start];
        walk(&graph, &mut path, &mut found);
    }
    found
        .into_iter()
        .map(|circle| {
            let steps: Vec<String> = circle
                .windows(2)
                .map(|pair| {
                    let import = graph[pair[0]][pair[1]];
                    format!("{}:{} imports {}", import.file, import.line, import.to)
                })
                .collect();
            format!("circle: {} ({})", circle.join(" -> "), steps.join("; "))
        })
        .collect()
}

/// Depth-first from `path`'s last module; a circle is recorded once, from its smallest
/// module (the walk that starts there), so each circle is reported a single time.
fn walk<'a>(
    graph: &BTreeMap<&'a str, BTreeMap<&'a str, &Import>>,
    path: &mut Vec<&'a str>,
    found: &mut Vec<Vec<&'a str>>,
) {
    let (start, here) = (path[0], path[path.len() - 1]);
    for &next in graph.get(here).map(|m| m.keys()).into_iter().flatten() {
        if next == start {
            let mut circle = path.clone();
            circle.push(start);
            found.push(circle);
        } else if next > start && !path.contains(&next) {
            path.push(next);
            walk(graph, path, found);
            path.pop();
        }
    }
}

/// `crate::NAME` and `crate::{NAME, NAME::...}`: each NAME with its offset and how the
/// path is written.
fn crate_paths(code: &str) -> Vec<(usize, String, String)> {
    let mut names = Vec::new();
    for (offset, _) in code.match_indices("crate::") {
        let before = code[..offset].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        let rest = &code[offset + "crate::".len()..];
        let heads = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => vec![ident_at(rest)],
        };
        for name in heads {
            if !name.is_empty() && name != "self" {
                names.push((offset, format!("crate::{name}"), name));
            }
        }
    }
    names
}

/// The first name of each item of a `{...}` group (the text just after its `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = vec![ident_at(group.trim_start())];
    let mut depth = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => heads.push(ident_at(group[i + 1..].trim_start())),
            _ => {}
        }
    }
    heads
}

/// In the crate root, a path may start with a module's bare name: `config::load`.
fn root_paths(code: &str, modules: &[String]) -> Vec<(usize, String, String)> {
    let mut names = Vec::new();
    for (offset, _) in code.match_indices("::") {
        let head = code[..offset].trim_end_matches(is_ident);
        let name = &code[head.len()..offset];
        let qualified = head.ends_with(':') || head.ends_with('$');
        if !qualified && modules.iter().any(|m| m == name) {
            names.push((head.len(), format!("{name}::"), name.to_string()));
        }
    }
    names
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ident_at(text: &str) -> String {
    text.chars().take_while(|&c| is_ident(c)).collect()
}

/// Files that hold a `#[cfg(test)] mod NAME;` declared elsewhere (and files below them).
fn test_only_files(files: &[(String, String)]) -> Vec<String> {
    let mut dirs = Vec::new();
    for (path, text) in files {
        let code = code_only(text);
        for (start, _) in code.match_indices("#[cfg(test)]") {
            if let Some((name, false)) = test_module_at(&code[start..]) {
                dirs.push(format!("{}/{name}", child_dir(path)));
            }
        }
    }
    files
        .iter()
        .map(|(path, _)| path.clone())
        .filter(|path| {
            dirs.iter()
                .any(|dir| path == &format!("{dir}.rs") || path.starts_with(&format!("{dir}/")))
        })
        .collect()
}

/// Where the files of a module's children are: beside mod.rs and lib.rs, else in a
/// folder named after the file.
fn child_dir(path: &str) -> String {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    match file {
        "mod.rs" | "lib.rs" => dir.to_string(),
        _ => format!("{dir}/{}", file.trim_end_matches(".rs")),
    }
}

/// Code with every `#[cfg(test)] mod NAME { ... }` blanked out (newlines kept).
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    for (start, _) in code.match_indices("#[cfg(test)]") {
        if let Some((_, true)) = test_module_at(&code[start..]) {
            let open = start + code[start..].find('{').unwrap_or(0);
            let end = matching_brace(code, open).unwrap_or(code.len());
            out.replace_range(start..end, &blank(&code[start..end]));
        }
    }
    out
}

/// After `#[cfg(test)]`, other attributes and a visibility: `mod NAME` and whether its
/// body is inline (`{`) or in a file (`;`).
fn test_module_at(text: &str) -> Option<(String, bool)> {
    let mut rest = text["#[cfg(test)]".len()..].trim_start();
    while rest.starts_with("#[") {
        rest = rest[rest.find(']')? + 1..].trim_start();
    }
    if let Some(after) = rest.strip_prefix("pub") {
        let after = after.trim_start();
        rest = match after.strip_prefix('(') {
            Some(inner) => inner[inner.find(')')? + 1..].trim_start(),
            None => after,
        };
    }
    let name_and_body = rest.strip_prefix("mod")?.trim_start();
    let name = ident_at(name_and_body);
    match name_and_body[name.len()..].trim_start().chars().next()? {
        '{' => Some((name, true)),
        ';' => Some((name, false)),
        _ => None,
    }
}

/// The offset just past the `}` that closes the `{` at `open`.
fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Spaces for every character of `text` but its newlines.
fn blank(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect()
}

/// The source with comments and the insides of string and character literals blanked,
/// so that only code is left, on the same lines.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let skip = literal_or_comment_len(&chars, i);
        if skip == 0 {
            out.push(chars[i]);
            i += 1;
        } else {
            out.extend(
                chars[i..i + skip]
                    .iter()
                    .map(|&c| if c == '\n' { '\n' } else { ' ' }),
            );
            i += skip;
        }
    }
    out
}

/// How many characters a comment or literal starting at `i` takes (0: neither).
fn literal_or_comment_len(chars: &[char], i: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let starts_token = i == 0 || !is_ident(at(i - 1));
    match (at(i), at(i + 1)) {
        ('/', '/') => {
            (i..chars.len())
                .find(|&k| at(k) == '\n')
                .unwrap_or(chars.len())
                - i
        }
        ('/', '*') => block_comment_len(chars, i),
        ('"', _) => quoted_len(chars, i, '"'),
        ('\'', _) if at(i + 1) == '\\' || at(i + 2) == '\'' => quoted_len(chars, i, '\''),
        ('r', '"' | '#') if starts_token => raw_string_len(chars, i + 1).map_or(0, |n| n + 1),
        ('b', 'r') if starts_token => raw_string_len(chars, i + 2).map_or(0, |n| n + 2),
        _ => 0,
    }
}

/// `/* ... */`, nested as Rust nests them.
fn block_comment_len(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut k = start;
    while k + 1 < chars.len() {
        match (chars[k], chars[k + 1]) {
            ('/', '*') => (depth, k) = (depth + 1, k + 2),
            ('*', '/') => {
                (depth, k) = (depth - 1, k + 2);
                if depth == 0 {
                    return k - start;
                }
            }
            _ => k += 1,
        }
    }
    chars.len() - start
}

/// A `"..."` or `'.'` literal with backslash escapes.
fn quoted_len(chars: &[char], start: usize, quote: char) -> usize {
    let mut k = start + 1;
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 2,
            c if c == quote => return k + 1 - start,
            _ => k += 1,
        }
    }
    chars.len() - start
}

/// `#*"..."#*` from just after the `r`; None if it is a raw identifier, not a string.
fn raw_string_len(chars: &[char], start: usize) -> Option<usize> {
    let hashes = chars[start..].iter().take_while(|&&c| c == '#').count();
    if chars.get(start + hashes) != Some(&'"') {
        return None;
    }
    let body = start + hashes + 1;
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let end = (body..chars.len())
        .find(|&k| chars[k..].starts_with(&closing))
        .map_or(chars.len(), |k| k + closing.len());
    Some(end - start)
}

/// Every `.rs` file under `dir`, but the binaries' (main.rs and bin/), in a stable order.
fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy();
        let top = dir.ends_with("src");
        if top && (name == "main.rs" || name == "bin") {
            continue;
        }
        if path.is_dir() {
            files.extend(source_files(&path));
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    files
}
