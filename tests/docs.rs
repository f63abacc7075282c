//! The documentation against bundle-init: every bundle file shown in README.md and docs/
//! passes `--check`, every relative link and anchor there points at something that exists,
//! and the README stays a front page. (The keys tables are checked against the parser's
//! own lists by a unit test, `keys::documented`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TempDir, bundle_init_bin};

/// The front page's budget, in bytes: the reference belongs in docs/.
const FRONT_PAGE_MAX_BYTES: usize = 12_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, as (path from the repository root, text).
fn doc_files() -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    names.sort();
    names.insert(0, "README.md".to_string());
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root().join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

/// A fenced code block: its tag (```bundle gives "bundle"), its first line's number, its text.
struct Block {
    tag: String,
    line: usize,
    text: String,
}

fn fenced_blocks(file: &str, doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in doc.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(tag)) => {
                open = Some(Block {
                    tag: tag.trim().to_string(),
                    line: n + 2,
                    text: String::new(),
                })
            }
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{file}: a ``` block is not closed");
    blocks
}

/// A block that reads like a bundle file: a `[section]` line and a `run =` line.
fn looks_like_a_bundle_file(text: &str) -> bool {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let section = lines
        .iter()
        .any(|l| l.starts_with('[') && l.ends_with(']') && !l.contains(':') && !l.contains(' '));
    let run = lines.iter().any(|l| {
        l.strip_prefix("run")
            .is_some_and(|r| r.trim_start().starts_with('='))
    });
    section && run
}

/// The `NAME=VALUE` after `# DIRECTIVE: ` on the block's first line.
fn directive<'a>(text: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let first = text.lines().next()?;
    let setting = first.strip_prefix(&format!("# {name}: "))?;
    Some(setting.split_once('=').expect("NAME=VALUE"))
}

/// `bundle-init --bundle PATH --check` with only the given variable set.
fn check(path: &str, setting: Option<(&str, &str)>) -> std::process::Output {
    let mut check = Command::new(bundle_init_bin());
    check.args(["--bundle", path, "--check"]).env_clear();
    if let Some((name, value)) = setting {
        check.env(name, value);
    }
    check.output().unwrap()
}

fn assert_passes(what: &str, block: &str, out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}:\n{block}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks one ```bundle block. `# check-with: NAME=VALUE` on its first line: checked without
/// and with that variable. `# check-needs: NAME=VALUE`: checked with it, and refused (exit 2)
/// without it, as the example says it would be.
fn check_bundle(dir: &TempDir, what: &str, block: &str, n: usize) {
    let path = dir.write(&format!("block-{n}.bundle"), block);
    if let Some(setting) = directive(block, "check-needs") {
        assert_passes(what, block, &check(&path, Some(setting)));
        let without = check(&path, None);
        assert_eq!(
            without.status.code(),
            Some(2),
            "{what} without {setting:?}:\n{block}"
        );
        return;
    }
    assert_passes(what, block, &check(&path, None));
    if let Some(setting) = directive(block, "check-with") {
        assert_passes(
            &format!("{what} with {setting:?}"),
            block,
            &check(&path, Some(setting)),
        );
    }
}

/// Checks a ```bundle-dropin block as a drop-in of the bundle file before it: the main file
/// includes it, passes `--check`, and the plan has the drop-in's daemons.
fn check_dropin(dir: &TempDir, what: &str, main: &str, dropin: &str, n: usize) {
    let conf = dir.0.join(format!("dropin-{n}"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("dropin.bundle"), dropin).unwrap();
    let main = format!("include = dropin-{n}/*.bundle\n{main}");
    let path = dir.write(&format!("main-{n}.bundle"), &main);
    let out = check(&path, None);
    assert_passes(what, &format!("{main}\n--- drop-in:\n{dropin}"), &out);
    let plan = String::from_utf8_lossy(&out.stdout);
    for section in dropin.lines().filter(|l| l.starts_with('[')) {
        assert!(
            plan.contains(section),
            "{what}: {section} is not in the plan:\n{plan}"
        );
    }
}

/// Every bundle file in README.md and docs/ (the ```bundle and ```bundle-dropin blocks)
/// passes `--check`, so the reference, the guide and the tour cannot drift from the parser;
/// a block that reads like a bundle file must carry one of those tags.
#[test]
fn every_bundle_file_in_the_docs_passes_check() {
    let dir = TempDir::new("docs");
    let mut checked = Vec::new();
    let mut n = 0;
    for (file, doc) in doc_files() {
        let mut previous: Option<String> = None;
        let mut in_file = 0;
        for block in fenced_blocks(&file, &doc) {
            let what = format!("{file}:{} (```{})", block.line, block.tag);
            n += 1;
            match block.tag.as_str() {
                "bundle" => check_bundle(&dir, &what, &block.text, n),
                "bundle-dropin" => {
                    let main = previous.as_deref().unwrap_or_else(|| {
                        panic!("{what}: a drop-in needs a ```bundle block before it")
                    });
                    check_dropin(&dir, &what, main, &block.text, n);
                }
                _ => {
                    assert!(
                        !looks_like_a_bundle_file(&block.text),
                        "{what} reads like a bundle file: tag it ```bundle so that it is \
                         checked\n{}",
                        block.text
                    );
                    continue;
                }
            }
            in_file += 1;
            if block.tag == "bundle" {
                previous = Some(block.text);
            }
        }
        checked.push((file, in_file));
    }
    let count = |name: &str| checked.iter().find(|(f, _)| f == name).map_or(0, |c| c.1);
    assert!(count("README.md") >= 1, "{checked:?}");
    assert!(count("docs/bundle-file.md") >= 6, "{checked:?}");
    assert!(count("docs/MIGRATING.md") >= 5, "{checked:?}");
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks), with GitHub's `-1`,
/// `-2` for repeated ones.
fn anchors(doc: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut in_code = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !in_code) else {
            continue;
        };
        let base = anchor_of(heading.trim_start_matches('#'));
        let repeats = found
            .iter()
            .filter(|a| {
                **a == base
                    || a.strip_prefix(&format!("{base}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        found.push(match repeats {
            0 => base,
            n => format!("{base}-{n}"),
        });
    }
    found
}

/// The targets of a file's inline links `[text](target)`, outside code blocks and spans.
fn link_targets(doc: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans are not prose: a `](` inside one is not a link.
        let prose: String = line.split('`').step_by(2).collect();
        for (i, _) in prose.match_indices("](") {
            if let Some(end) = prose[i + 2..].find(')') {
                targets.push(prose[i + 2..i + 2 + end].to_string());
            }
        }
    }
    targets
}

/// What is wrong with one link of `file`, or None.
fn broken(file: &str, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let here = root().join(file);
    let resolved: PathBuf = match path {
        "" => here.clone(),
        _ => here.parent().unwrap().join(path),
    };
    if !resolved.exists() {
        return Some(format!(
            "{file}: link to {target}: {} does not exist",
            resolved.display()
        ));
    }
    if anchor.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string(&resolved).ok()?;
    let known = anchors(&text);
    (!known.iter().any(|a| a == anchor))
        .then(|| format!("{file}: link to {target}: no heading with that anchor (has {known:?})"))
}

/// Every relative link in README.md and docs/ names a file or directory that exists, and
/// every `#anchor` a heading of that file, so moving a section cannot leave a reader at a
/// dead end.
#[test]
fn every_link_in_the_docs_leads_somewhere() {
    let mut problems = Vec::new();
    let mut links = 0;
    for (file, doc) in doc_files() {
        for target in link_targets(&doc) {
            links += 1;
            problems.extend(broken(&file, &target));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
    assert!(
        links >= 50,
        "only {links} links found: is the link reader broken?"
    );
}

/// The link checker itself: anchors as GitHub makes them, and a dead link or anchor named.
#[test]
fn the_link_check_knows_githubs_anchors_and_names_a_dead_link() {
    assert_eq!(anchor_of(" Errors and `--check`"), "errors-and---check");
    assert_eq!(
        anchor_of(" The seed's four daemons"),
        "the-seeds-four-daemons"
    );
    assert_eq!(
        anchor_of(" Reload: apply an edited bundle file"),
        "reload-apply-an-edited-bundle-file"
    );
    assert_eq!(
        anchors("# A\n```\n# not a heading\n```\n## A\n### b\n"),
        ["a", "a-1", "b"]
    );
    assert_eq!(
        link_targets("[x](a.md#b) and `[y](code.md)` and [z](https://e.invalid/)\n"),
        ["a.md#b", "https://e.invalid/"]
    );
    assert!(broken("README.md", "docs/README.md").is_none());
    assert!(broken("README.md", "docs/no-such-page.md").is_some());
    assert!(broken("README.md", "docs/bundle-file.md#daemon-keys").is_none());
    assert!(broken("README.md", "docs/bundle-file.md#no-such-section").is_some());
}

/// The README is a front page: under 12 KB, with the two commands CI and a newcomer start
/// from, and a link to every page of the reference.
#[test]
fn the_readme_is_a_front_page_that_links_every_docs_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.len() < FRONT_PAGE_MAX_BYTES,
        "README.md is {} bytes; the reference belongs in docs/",
        readme.len()
    );
    for command in ["bash .ci/run demo", "bash .ci/run "] {
        assert!(readme.contains(command), "README.md lost {command:?}");
    }
    for (file, _) in doc_files().iter().skip(1) {
        if file != "docs/README.md" {
            assert!(
                readme.contains(&format!("]({file})")),
                "README.md does not link {file}"
            );
        }
    }
}
